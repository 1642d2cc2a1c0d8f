"""The SQL of the store adapters, one package per dialect: migrations and statement builders."""
