-- The fan's language when the order was checked out (server.core.languages: the bo_lang cookie,
-- else Accept-Language, among the catalogs in static/i18n/): its mails are written in it. NULL
-- for orders from before this column: the default language.
ALTER TABLE orders ADD COLUMN lang text;
