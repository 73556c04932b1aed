"""`python -m evaluation`: retrieval and answer quality on a question set, as a report and a gate."""
