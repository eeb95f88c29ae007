"""The gateway's store: tortoise-orm models and the queries the shell runs against them."""
