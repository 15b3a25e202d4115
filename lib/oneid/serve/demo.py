"""``oneid demo``'s last step: the API up for a moment on the freshly loaded store, one look-up."""

from __future__ import annotations

import time

from pyspark.sql import SparkSession

from oneid.conf import OneIdConfig
from oneid.conf.models import ApiKeyConf


def demo_lookup(spark: SparkSession, cfg: OneIdConfig) -> list[str]:
    """Look up a demo phone (raw, from bronze; never printed) through the running API, with a
    throw-away key that exists only in this process."""
    import httpx

    from oneid.explore import pick_phone
    from oneid.serve.auth import new_key
    from oneid.serve.server import build_app, running

    phone = pick_phone(spark, cfg)
    key, digest = new_key()
    demo_key = ApiKeyConf(name="demo", sha256=digest, scopes=("lookup", "profile:read"))
    serve = cfg.env.serve.model_copy(update={"api_keys": (demo_key,)})
    cfg = cfg.model_copy(update={"env": cfg.env.model_copy(update={"serve": serve})})
    with running(build_app(cfg), "127.0.0.1", 0) as url, httpx.Client(base_url=url) as client:
        body = {"id_type": "phone", "value": phone, "with_profile": True}
        started = time.perf_counter()
        response = client.post("/v1/lookup", json=body, headers={"X-API-Key": key})
        millis = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    answer = response.json()
    profile = answer["profile"]
    audiences = ", ".join(a["audience_id"] for a in profile["audiences"]["items"]) or "none"
    return [
        f"serve: POST {url}/v1/lookup (a phone of crm_members) -> OneID {answer['oneid']} "
        f"(best phone {profile['best_phone']}) in {millis:.1f} ms, "
        f"store version {answer['store_version']}",
        f"serve: profile: {profile['identifiers']['total']} identifiers, "
        f"{len(profile['tags'])} tags, audiences: {audiences}",
    ]
