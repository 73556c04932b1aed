"""`python -m app`: the Streamlit chat on top of core (the chain, the check, the store) and its uploads."""
