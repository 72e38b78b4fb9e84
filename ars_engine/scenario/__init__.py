"""The scenario language: model, loader, validator, interpreter and step kinds."""
