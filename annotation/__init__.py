"""LLM annotation you can check: gold-set figures (gold.py) and a distilled student with label-issue detection
(student.py). rayjobs/ reads rows and writes runs; this package only computes."""
