"""Flower glue: the ServerApp / ClientApp and the messages between them."""
