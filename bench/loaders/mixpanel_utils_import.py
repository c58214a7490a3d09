"""Mixpanel's mixpanel-utils package, pointed at a local Mixpanel-compatible server.

    python bench/loaders/mixpanel_utils_import.py <api url> <api secret> <token> <events.ndjson>

Its import URL is fixed to Mixpanel's hosts (`import_api`), so this replaces that attribute;
everything else runs as the package ships it (default pool of 2 x CPUs threads, batches of
2,000, strict mode). It takes a list of events: the file is read whole first.
"""

import json
import sys

from mixpanel_utils import MixpanelUtils

api_url, secret, token, path = sys.argv[1:5]
with open(path, encoding="utf-8") as handle:
    events = [json.loads(line) for line in handle]
utils = MixpanelUtils(secret, token=token)
utils.import_api = api_url
utils.import_events(events, timezone_offset=0)
