"""The HTTP shell: a Quart app that asks the decision core about every request."""
