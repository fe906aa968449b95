"""Parses an OpenMetrics exposition with prometheus_client's parser (a
parser no one here wrote) and prints every sample as one JSON line:
{"name", "labels", "value"}. Exits 1 with the parser's error when the text
does not parse.

usage: metrics_parse.py < exposition
"""
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families

text = sys.stdin.read()
try:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            print(json.dumps({"name": s.name, "labels": s.labels, "value": s.value}))
except Exception as e:  # the parser raises ValueError and others
    print(f"does not parse: {e}", file=sys.stderr)
    sys.exit(1)
