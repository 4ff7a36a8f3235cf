"""The waiting room: join, status and leave, the admission step, websocket fan-out and the queue routes."""
