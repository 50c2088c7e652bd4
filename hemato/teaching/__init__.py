"""Quiz logic, durable quiz storage and the cell atlas."""
