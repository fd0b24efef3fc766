"""Runtime plumbing shared by every service: the embedded broker and PostgreSQL, Kafka
clients and topics, the dead-letter writer."""
