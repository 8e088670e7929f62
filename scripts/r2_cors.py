"""Renders deploy/r2/cors.json for one environment, compact, as PutBucketCors takes it:
"$APP_ORIGINS" becomes the origins the app is served from, read as shared::config reads
them (ALLOWED_REDIRECT_ORIGINS, comma-separated, else the origin of APP_URL).

    python3 scripts/r2_cors.py deploy/r2/cors.json
"""
import json
import os
import sys
from urllib.parse import urlsplit


def origins():
    listed = os.environ.get("ALLOWED_REDIRECT_ORIGINS") or None
    if listed is not None:
        return [o.strip().rstrip("/") for o in listed.split(",")]
    url = urlsplit(os.environ.get("APP_URL") or "http://localhost:8081")
    if url.scheme not in ("http", "https") or not url.hostname or url.username:
        sys.exit("APP_URL is not an http(s) URL")
    default_port = {"http": 80, "https": 443}[url.scheme]
    port = f":{url.port}" if url.port and url.port != default_port else ""
    return [f"{url.scheme}://{url.hostname}{port}"]


def main():
    document = json.load(open(sys.argv[1]))
    for rule in document["CORSRules"]:
        rule["AllowedOrigins"] = [
            o for origin in rule["AllowedOrigins"]
            for o in (origins() if origin == "$APP_ORIGINS" else [origin])
        ]
    print(json.dumps(document, separators=(",", ":")))


main()
