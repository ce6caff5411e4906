"""Recipe architectures beyond the two Anthropic ones; each module registers its architecture and recipes."""
