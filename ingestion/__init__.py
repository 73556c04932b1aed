"""Load documents, split them into token-sized overlapping chunks, embed them and keep Chroma in step."""
