"""Each long stage of a run as one object that first estimates its time and memory, then runs."""
