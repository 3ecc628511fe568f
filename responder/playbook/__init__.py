"""Response playbooks: strict loading, the typed model, validation, templating and schema."""
