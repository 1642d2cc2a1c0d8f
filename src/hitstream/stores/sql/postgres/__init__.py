"""The PostgreSQL dialect: numbered migrations (``NNNN_name.sql``) and the statements it runs."""
