"""S3 PUT/GET load with SigV4 signing (``oncluster/s3load.py``, standard library only)."""

from __future__ import annotations

import re

from orchestrator.bench.kinds import ClientKind
from orchestrator.bench.kinds.options import ratio
from orchestrator.schema import expect_int, expect_pattern, expect_str

S3_OPS = ("put", "get")


def _options(raw, path: str) -> dict:
    bucket = expect_pattern(raw.get("bucket", "orch-bench"), f"{path}.bucket",
                            lambda v: bool(re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", v)),
                            "an S3 bucket name: 3-63 lowercase letters, digits, '.' or '-'")
    return {"ratio": ratio(raw, path, S3_OPS, {"put": 0.5, "get": 0.5}), "bucket": bucket,
            "objects": expect_int(raw.get("objects", 100), f"{path}.objects", 1, 10_000_000),
            "object_bytes": expect_int(raw.get("object_bytes", 1 << 20), f"{path}.object_bytes", 1, 5 << 30),
            "credentials": expect_str(raw.get("credentials", "~/.orchestrator/minio.env"), f"{path}.credentials")}


def _argv(spec, url: str, node_index: int, context: dict) -> list[str]:
    o = spec.options
    return ["--url", url, "--bucket", o["bucket"], "--objects", str(o["objects"]),
            "--object-bytes", str(o["object_bytes"]), "--credentials", o["credentials"],
            "--ratio", ",".join(f"{op}={share:g}" for op, share in o["ratio"].items()), "--seed", str(node_index)]


KINDS = (ClientKind("s3", "s3load.py", ("ratio", "objects", "object_bytes", "bucket", "credentials"), _options, _argv),)
