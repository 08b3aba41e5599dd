"""docs/FORMAT.md must state the constants the code uses, so the document cannot drift."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from dbs_admin.sealed import aead, keys, layout, rs, writer

DOC = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"

CODE = {
    "MAGIC": layout.MAGIC,
    "FORMAT_VERSION": layout.FORMAT_VERSION,
    "BLOCK_SIZE": layout.BLOCK_SIZE,
    "META_PIECE_SIZE": layout.META_PIECE_SIZE,
    "RS_N": rs.N,
    "RS_NSYM": rs.NSYM,
    "RS_K": rs.K,
    "RS_PRIM": rs.PRIM,
    "RS_GENERATOR": rs.GENERATOR,
    "RS_FCR": rs.FCR,
    "BLOCK_CODEWORDS": rs.codewords_for(layout.BLOCK_SIZE),
    "BLOCK_PARITY_SIZE": rs.parity_size(layout.BLOCK_SIZE),
    "DATA_HASH_SIZE": layout.DATA_HASH_SIZE,
    "PARITY_HASH_SIZE": layout.PARITY_HASH_SIZE,
    "TABLE_ENTRY_SIZE": layout.TABLE_ENTRY_SIZE,
    "FILE_ID_SIZE": layout.FILE_ID_SIZE,
    "HEADER_DIGEST_SIZE": layout.HEADER_DIGEST_SIZE,
    "PREFIX_MESSAGE_SIZE": layout.PREFIX.size,
    "PREFIX_SIZE": layout.PREFIX_SIZE,
    "HEADER_FIXED_SIZE": layout.HEADER_FIXED.size,
    "TABLE_FIXED_SIZE": layout.TABLE_FIXED.size,
    "LOCATOR_SIZE": layout.LOCATOR.size,
    "LOCATOR_RECORD_SIZE": layout.LOCATOR_RECORD_SIZE,
    "KIND_HEADER": layout.KIND_HEADER,
    "KIND_TABLE": layout.KIND_TABLE,
    "KIND_MANIFEST": layout.KIND_MANIFEST,
    "KIND_LOCATOR": layout.KIND_LOCATOR,
    "HASH_BLAKE2B": layout.HASH_BLAKE2B,
    "COMPRESSION_ZSTD": layout.COMPRESSION_ZSTD,
    "CIPHER_AES256GCM_STREAM": layout.CIPHER_AES256GCM_STREAM,
    "AEAD_CHUNK_SIZE": aead.PLAINTEXT_CHUNK_SIZE,
    "AEAD_TAG_SIZE": aead.TAG_SIZE,
    "PAYLOAD_PURPOSE": aead.PAYLOAD_PURPOSE,
    "MANIFEST_PURPOSE": writer.MANIFEST_PURPOSE,
    "MANIFEST_NONCE_SIZE": writer.MANIFEST_NONCE_SIZE,
}


def documented_constants() -> dict[str, object]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## 2. Constants", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| `(.+?)` \|", section, flags=re.MULTILINE)
    return {name: ast.literal_eval(value) for name, value in rows}


def test_every_constant_in_the_document_matches_the_code():
    documented = documented_constants()
    assert set(documented) == set(CODE), "FORMAT.md and this test must list the same constants"
    for name, value in documented.items():
        assert CODE[name] == value, f"{name}: FORMAT.md says {value!r}, the code has {CODE[name]!r}"


CRYPTO = {
    "DATA_KEY_SIZE": keys.DATA_KEY_SIZE,
    "SLOT_AD_LABEL": keys.SLOT_AD_LABEL,
    "IDENTITY_AD_LABEL": keys.IDENTITY_AD_LABEL,
    "X25519_HKDF_INFO": keys.X25519_HKDF_INFO,
    "RECIPIENT_CHECKSUM_LABEL": keys.RECIPIENT_CHECKSUM_LABEL,
    "RECIPIENT_FINGERPRINT_LABEL": keys.RECIPIENT_FINGERPRINT_LABEL,
    "PAYLOAD_PURPOSE": aead.PAYLOAD_PURPOSE,
    "SLOT_TYPE_PASSPHRASE": keys.SLOT_TYPE_PASSPHRASE,
    "SLOT_TYPE_RECIPIENT": keys.SLOT_TYPE_RECIPIENT,
    "PLAINTEXT_CHUNK_SIZE": aead.PLAINTEXT_CHUNK_SIZE,
    "TAG_SIZE": aead.TAG_SIZE,
    "MAX_CHUNK_SIZE": aead.MAX_CHUNK_SIZE,
}


def test_crypto_constants_in_the_document_match_the_code():
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### 7.2 Constants", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| `(.+?)`", section, flags=re.MULTILINE)
    documented = {name: ast.literal_eval(value) for name, value in rows}
    assert documented == CRYPTO


def test_field_tables_match_struct_sizes():
    text = DOC.read_text(encoding="utf-8")

    def table_end(heading: str) -> int:
        section = text.split(heading, 1)[1].split("\n#", 1)[0]
        rows = re.findall(r"^\| (\d+) \| (\d+|`\w+`|48·`block_count`) \|", section, flags=re.MULTILINE)
        offset, size = rows[-1]
        return int(offset) + (int(size) if size.isdigit() else 0)

    assert table_end("### 4.1 Prefix") == layout.PREFIX_SIZE
    assert table_end("### 4.3 Header payload") == layout.HEADER_FIXED.size
    assert table_end("### 4.4 Block table payload") == layout.TABLE_FIXED.size
    assert table_end("### 4.6 Locator payload") == layout.LOCATOR.size


def test_documented_record_sizes():
    assert layout.record_size(layout.LOCATOR.size) == layout.LOCATOR_RECORD_SIZE == 244
    assert layout.BLOCK_SIZE + rs.parity_size(layout.BLOCK_SIZE) == 74944
