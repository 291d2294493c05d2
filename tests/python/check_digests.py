#!/usr/bin/env python3
"""Independent checker of audit-archiver's signed, chained digest files.

It follows the AWS CloudTrail User Guide ("Custom implementations of
CloudTrail log file integrity validation") and the project's digest format,
and deliberately shares no code with the Rust host, so that the end-to-end
tests prove the signatures with code that is not ours.

    check_digests.py --bucket B [--endpoint-url URL] [--region R]
                     [--prefix _digest/] (--public-key PEM | --kms-key-id KEY)

A digest is `{prefix}{chain}/YYYY/MM/DD/{chain}-digest-YYYYMMDDTHHMMSSZ.json.gz`
(the time is its digestEndTime), a gzip of a UTF-8 JSON object; its signature
is the object's user metadata `signature` (hex), with `signature-algorithm`,
over the UTF-8 string

    digestEndTime \\n bucket/key \\n hex(sha256(JSON)) \\n previousDigestSignature

(`null` for the first digest of a chain), as RSASSA-PKCS1-v1_5 with SHA-256
(`SHA256withRSA`) or as plain `Ed25519`.

Prints one JSON object, {"digests", "valid_digests", "log_files",
"valid_log_files", "chains": {chain: digests}, "problems": [...]}, and exits
0 when there are no problems, 1 otherwise, 2 on usage errors. A digest is
valid when its own checks pass (name, location, signature, link to the
previous digest); a log file is valid when its object's current version has
the listed SHA-256.
"""

import argparse
import gzip
import hashlib
import json
import re
import sys
from collections import defaultdict
from datetime import datetime, timezone

import boto3
from botocore.config import Config
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

PREVIOUS_FIELDS = ("previousDigestS3Bucket", "previousDigestS3Object", "previousDigestHashValue",
                   "previousDigestHashAlgorithm", "previousDigestSignature")
NAME = re.compile(r"(?P<chain>[^/]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
                  r"(?P=chain)-digest-(?P<stamp>(?P=y)(?P=m)(?P=d)T\d{6}Z)\.json\.gz")


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def load_key(args, kms):
    """The public key, its DER SubjectPublicKeyInfo, and the KMS key ARN if any."""
    if args.public_key:
        with open(args.public_key, "rb") as f:
            key = serialization.load_pem_public_key(f.read())
        arn = None
    else:
        answer = kms.get_public_key(KeyId=args.kms_key_id)
        key = serialization.load_der_public_key(answer["PublicKey"])
        arn = answer["KeyId"]
    if isinstance(key, rsa.RSAPublicKey):
        algorithm = "SHA256withRSA"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm = "Ed25519"
    else:
        raise ValueError(f"unsupported public key type {type(key).__name__}")
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, algorithm, sha256_hex(der), arn


def verify(key, signature, message):
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, message)
        return True
    except InvalidSignature:
        return False


def end_stamp(text):
    """digestEndTime (RFC 3339, UTC) as the key's YYYYMMDDTHHMMSSZ, or None."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00").astimezone(timezone.utc)
    except ValueError:
        return None
    return when.strftime("%Y%m%dT%H%M%SZ")


def read_digest(s3, bucket, key):
    """(document, JSON bytes, metadata signature hex, metadata algorithm)."""
    answer = s3.get_object(Bucket=bucket, Key=key)
    body = answer["Body"].read()
    metadata = {k.lower(): v for k, v in answer.get("Metadata", {}).items()}
    raw = gzip.decompress(body)
    doc = json.loads(raw.decode("utf-8"))
    if not isinstance(doc, dict):
        raise ValueError("the JSON is not an object")
    return doc, raw, metadata.get("signature"), metadata.get("signature-algorithm")


def check_own(d, bucket, key_info):
    """Problems of one digest on its own: name, location, keys, signature."""
    key, algorithm, fingerprint, arn = key_info
    doc, problems = d["doc"], []
    if d["stamp"] != end_stamp(doc.get("digestEndTime")):
        problems.append(f"digestEndTime {doc.get('digestEndTime')!r} does not match the name's time {d['stamp']}")
    if doc.get("digestS3Bucket") != bucket or doc.get("digestS3Object") != d["key"]:
        problems.append(f"says it is s3://{doc.get('digestS3Bucket')}/{doc.get('digestS3Object')}"
                        f" but was found at s3://{bucket}/{d['key']}")
    if doc.get("digestPublicKeyFingerprint") is None and doc.get("digestSigningKeyId") is None:
        problems.append("names neither digestPublicKeyFingerprint nor digestSigningKeyId")
    if doc.get("digestPublicKeyFingerprint") not in (None, fingerprint):
        problems.append(f"digestPublicKeyFingerprint {doc.get('digestPublicKeyFingerprint')} is not the key's {fingerprint}")
    named = doc.get("digestSigningKeyId")
    # GetPublicKey answers the key ARN (some emulators: the bare key id).
    if arn and named is not None and named != arn and not (
            isinstance(named, str) and not arn.startswith("arn:") and named.endswith(f":key/{arn}")):
        problems.append(f"digestSigningKeyId {named} is not {arn}")
    if doc.get("digestSignatureAlgorithm") != algorithm or d["algorithm"] != algorithm:
        problems.append(f"signature algorithm {doc.get('digestSignatureAlgorithm')!r} (metadata"
                        f" {d['algorithm']!r}) does not fit the {algorithm} key")
    try:
        signature = bytes.fromhex(d["signature"] or "")
    except ValueError:
        signature = b""
    if not signature:
        problems.append("has no hex user metadata 'signature'")
        return problems
    previous = doc.get("previousDigestSignature")
    message = "\n".join([str(doc.get("digestEndTime")), f"{bucket}/{d['key']}", sha256_hex(d["raw"]),
                         "null" if previous is None else str(previous)]).encode("utf-8")
    if not verify(key, signature, message):
        problems.append("signature does not verify")
    return problems


def check_link(d, prev, bucket):
    """Problems of a digest's link to the one before it in its chain (None: first)."""
    doc = d["doc"]
    if prev is None:
        named = [f for f in PREVIOUS_FIELDS if doc.get(f) is not None]
        return [f"first digest of its chain but has {', '.join(named)}"] if named else []
    expected = {
        "previousDigestS3Bucket": bucket,
        "previousDigestS3Object": prev["key"],
        "previousDigestHashValue": sha256_hex(prev["raw"]),
        "previousDigestHashAlgorithm": "SHA-256",
        "previousDigestSignature": (prev["signature"] or "").lower(),
    }
    problems = []
    for field, want in expected.items():
        got = doc.get(field)
        if (got.lower() if isinstance(got, str) and field.endswith(("Value", "Signature")) else got) != want:
            problems.append(f"{field} is {got!r}, expected {want!r} (from {prev['key']})")
    if doc.get("digestStartTime") != prev["doc"].get("digestEndTime"):
        problems.append(f"digestStartTime {doc.get('digestStartTime')!r} is not the previous"
                        f" digestEndTime {prev['doc'].get('digestEndTime')!r}")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--endpoint-url")
    parser.add_argument("--region")
    parser.add_argument("--prefix", default="_digest/")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--public-key", metavar="PEM_FILE")
    source.add_argument("--kms-key-id", metavar="KEY")
    args = parser.parse_args(argv)

    session = boto3.session.Session(region_name=args.region)
    region = session.region_name or "us-east-1"
    config = Config(s3={"addressing_style": "path"}) if args.endpoint_url else None
    s3 = session.client("s3", endpoint_url=args.endpoint_url, region_name=region, config=config)
    try:
        kms = session.client("kms", endpoint_url=args.endpoint_url, region_name=region) if args.kms_key_id else None
        key_info = load_key(args, kms)
    except Exception as e:  # a key we cannot use is a usage error
        print(f"check_digests.py: cannot load the public key: {e}", file=sys.stderr)
        return 2

    problems, chains = [], defaultdict(list)
    try:
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix=args.prefix)
                for o in page.get("Contents", [])]
    except Exception as e:
        keys = []
        problems.append(f"cannot list s3://{args.bucket}/{args.prefix}: {e}")
    for key in keys:
        name = NAME.fullmatch(key[len(args.prefix):])
        if not name:
            problems.append(f"{key}: not a digest object name")
            continue
        try:
            doc, raw, signature, algorithm = read_digest(s3, args.bucket, key)
        except Exception as e:
            problems.append(f"{key}: unreadable digest: {e}")
            doc, raw, signature, algorithm = {}, b"", None, None
        chains[name["chain"]].append({"key": key, "stamp": name["stamp"], "doc": doc, "raw": raw,
                                      "signature": signature, "algorithm": algorithm})

    valid_digests = log_files = valid_log_files = 0
    listed = {}
    for chain in sorted(chains):
        prev = None
        for d in sorted(chains[chain], key=lambda d: d["key"]):
            if not d["raw"]:  # unreadable, reported above; the next link cannot hold
                prev = d
                continue
            own = check_own(d, args.bucket, key_info) + check_link(d, prev, args.bucket)
            problems += [f"{d['key']}: {p}" for p in own]
            valid_digests += not own
            prev = d
            entries = d["doc"].get("logFiles", [])
            if not isinstance(entries, list):
                problems.append(f"{d['key']}: logFiles is not a list")
                entries = []
            for entry in entries:
                log_files += 1
                if not isinstance(entry, dict) or entry.get("hashAlgorithm") != "SHA-256":
                    problems.append(f"{d['key']}: log file entry {entry!r} is not hashed with SHA-256")
                    continue
                where = (entry.get("s3Bucket"), entry.get("s3Object"))
                if where in listed:
                    problems.append(f"{d['key']}: s3://{where[0]}/{where[1]} is also listed by {listed[where]}")
                listed.setdefault(where, d["key"])
                try:
                    body = s3.get_object(Bucket=where[0], Key=where[1])["Body"].read()
                except Exception as e:
                    problems.append(f"{d['key']}: cannot read log file s3://{where[0]}/{where[1]}: {e}")
                    continue
                if sha256_hex(body) != str(entry.get("hashValue")).lower():
                    problems.append(f"{d['key']}: log file s3://{where[0]}/{where[1]} has SHA-256"
                                    f" {sha256_hex(body)}, the digest lists {entry.get('hashValue')}")
                else:
                    valid_log_files += 1

    print(json.dumps({
        "digests": sum(len(c) for c in chains.values()),
        "valid_digests": valid_digests,
        "log_files": log_files,
        "valid_log_files": valid_log_files,
        "chains": {chain: len(chains[chain]) for chain in sorted(chains)},
        "problems": problems,
    }, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
