-- The capture turn claims the payment follow-ups not done yet, oldest first
-- (ledger.run_due_actions, woken by every confirmation): without this index each claim walked
-- every follow-up ever done, in id order, so its cost grew with the sale.
CREATE INDEX payment_actions_owed ON payment_actions (id) WHERE done_at IS NULL;
