"""Boxoffice: a virtual waiting room and seat booking service for flash ticket sales."""
