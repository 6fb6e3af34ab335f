"""The `taskcounts` command: people's client of a deployment's API (read access). Not deployed."""
