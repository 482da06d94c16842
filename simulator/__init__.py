"""The OpenAI-compatible model simulator (`cutover simulate`) and the load generator (`cutover loadgen`)."""
