"""The write model and the law: facts, the client-record aggregate, vocabularies and errors."""
