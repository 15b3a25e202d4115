"""The demo data generator: deterministic, truthful about every row, and really messy."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import phonenumbers
import pyarrow.parquet as pq
import pytest

from oneid.standardize.normalize import normalize_phone
from oneid_demo import generate_demo
from oneid_demo.__main__ import main
from oneid_demo.app_events import ZERO_DEVICE
from oneid_demo.layout import SOURCE_BY_NAME, SOURCES, SourceSpec
from oneid_demo.phones import MOBILE_PREFIXES, PLACEHOLDER_PHONE
from oneid_demo.records import DEFECT_LABELS

SMALL = 300
BOM = b"\xef\xbb\xbf"
KEY_OF = {  # how the record key is read back from a clean row
    "crm_members": lambda row: row["会员编号"],
    "orders": lambda row: row["order_id"],
    "app_events": lambda row: row["event_id"],
    "wechat_users": lambda row: f"{row['appid']}:{row['openid']}",
    "douyin_leads": lambda row: row["lead_id"],
    "xhs_leads": lambda row: row["线索ID"],
    "wecom_contacts": lambda row: row["external_userid"],
}
PHONE_COLUMN = {
    "crm_members": "手机号",
    "orders": "phone",
    "douyin_leads": "phone",
    "xhs_leads": "手机号",
    "wechat_users": "phone",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("small")
    return out, generate_demo(out, people=SMALL, seed=7)


@pytest.fixture(scope="module")
def default_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("default_like")
    return out, generate_demo(out, people=2000, seed=42)


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _lines(out: Path, spec: SourceSpec, path: str) -> list[str]:
    """Data lines of a CSV / JSON lines part (header and BOM removed)."""
    raw = (out / path).read_bytes()
    if spec.bom:
        assert raw.startswith(BOM)
        raw = raw[len(BOM) :]
    lines = raw.decode(spec.encoding).split("\n")
    assert lines[-1] == "", "every line ends with a newline"
    if spec.fmt == "csv":
        assert lines[0] == ",".join(spec.columns)
        return lines[1:-1]
    return lines[:-1]


def _rows(out: Path, spec: SourceSpec, path: str) -> list[dict | None]:
    """Parsed rows of a part; None where the row cannot be parsed into the source's columns."""
    if spec.fmt == "parquet":
        return pq.read_table(out / path).to_pylist()
    rows: list[dict | None] = []
    for line in _lines(out, spec, path):
        if spec.fmt == "jsonl":
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                rows.append(None)
        else:
            fields = next(csv.reader([line]))
            ok = len(fields) == len(spec.columns)
            rows.append(dict(zip(spec.columns, fields, strict=True)) if ok else None)
    return rows


def _truth(out: Path) -> list[dict]:
    return pq.read_table(out / "truth/records.parquet").to_pylist()


UNPARSEABLE = frozenset({"malformed_row", "bad_amount", "bad_timestamp"})
LINK_COLUMNS = {  # (identifier type, column) the identity pipeline links on, per source
    "crm_members": (("member", "会员编号"), ("phone", "手机号")),
    "orders": (("member", "member_id"), ("phone", "phone")),
    "app_events": (("member", "user_id"), ("phone", "phone"), ("device", "device_id")),
    "wechat_users": (("unionid", "unionid"), ("phone", "phone")),
    "douyin_leads": (("phone", "phone"),),
    "xhs_leads": (("phone", "手机号"),),
    "wecom_contacts": (("unionid", "unionid"),),
}


def _identifier(kind: str, raw: str | None) -> str | None:
    """The normalised value of an identifier cell, None for empty and junk values."""
    if not raw:
        return None
    if kind == "phone":
        value = normalize_phone(raw).value
        return None if value in (None, f"+86{PLACEHOLDER_PHONE}") else value
    if kind == "device":
        value = raw.strip().upper()
        return None if value == ZERO_DEVICE else value
    return raw.strip()


def linkage_ceiling(out: Path, manifest: dict) -> dict[str, float]:
    """Per-person connectivity of the parseable records of real persons, read from the files.

    Records of a person connect when they share a normalised identifier value (directly or
    through others); values seen with several persons (store phones, family devices) do not
    count. Returns the pairwise-recall ceiling (same-person pairs inside one cluster / all
    same-person pairs), the share of records whose truth `linkable` says whether they are in
    the person's largest cluster of records holding an identifier (either answer counts when
    two clusters tie), and the orphan share (records not linkable).
    """
    truth = {(t["file"], t["line_no"]): t for t in _truth(out)}
    people = pq.read_table(out / "truth/people.parquet").to_pylist()
    real = {p["person_id"] for p in people if p["kind"] == "person"}
    records: list[tuple[str, bool, list[tuple[str, str]]]] = []  # (person, linkable, ids)
    for entry in manifest["files"]:
        spec = SOURCE_BY_NAME[entry["source"]]
        for line_no, row in enumerate(_rows(out, spec, entry["path"]), start=1):
            t = truth[(entry["path"], line_no)]
            if t["person_id"] not in real:
                continue
            if row is None or t["defect"] in UNPARSEABLE:
                assert not t["linkable"], (entry["path"], line_no)
                continue
            values = [(kind, _identifier(kind, row[col])) for kind, col in LINK_COLUMNS[spec.name]]
            records.append((t["person_id"], t["linkable"], [v for v in values if v[1]]))
    persons_of: dict[tuple[str, str], set[str]] = {}
    for person, _, values in records:
        for value in values:
            persons_of.setdefault(value, set()).add(person)
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[tuple[str, str, str], int] = {}
    for i, (person, _, values) in enumerate(records):
        for value in values:
            if len(persons_of[value]) == 1:
                j = first_with.setdefault((person, *value), i)
                parent[find(i)] = find(j)
    size = Counter(find(i) for i in range(len(records)))
    records_of, largest, tied = Counter(), Counter(), Counter()
    for root, n in size.items():
        person = records[root][0]
        records_of[person] += n
        if not records[root][2]:  # a record without any identifier value
            continue
        if n > largest[person]:
            largest[person], tied[person] = n, 1
        elif n == largest[person]:
            tied[person] += 1
    agree = orphans = 0
    for i, (person, linkable, values) in enumerate(records):
        in_largest = bool(values) and size[find(i)] == largest[person]
        agree += linkable == in_largest or (in_largest and tied[person] > 1)
        orphans += not linkable
    pairs = sum(n * (n - 1) // 2 for n in records_of.values())
    linked_pairs = sum(n * (n - 1) // 2 for n in size.values())
    return {
        "recall_ceiling": linked_pairs / pairs,
        "linkable_agreement": agree / len(records),
        "orphan_share": orphans / len(records),
        "records": len(records),
    }


def test_same_seed_gives_identical_bytes(small, tmp_path: Path) -> None:
    out, manifest = small
    again = generate_demo(tmp_path, people=SMALL, seed=7)
    assert again == manifest
    first, second = _files(out), _files(tmp_path)
    assert list(first) == list(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_other_seed_gives_other_data(small, tmp_path: Path) -> None:
    out, _ = small
    generate_demo(tmp_path, people=SMALL, seed=8)
    first, other = _files(out), _files(tmp_path)
    parts = [name for name in first if "part-00000" in name or name.startswith("truth")]
    assert len(parts) == len(SOURCES) + 2
    assert [name for name in parts if first[name] == other.get(name)] == []


def test_truth_has_one_row_per_data_row_with_its_key(small) -> None:
    out, manifest = small
    truth = _truth(out)
    by_file: dict[str, list[dict]] = {}
    for row in truth:
        by_file.setdefault(row["file"], []).append(row)
    assert sorted(by_file) == sorted(f["path"] for f in manifest["files"])
    for entry in manifest["files"]:
        spec = SOURCE_BY_NAME[entry["source"]]
        rows = _rows(out, spec, entry["path"])
        expected = by_file[entry["path"]]
        assert len(rows) == len(expected) == entry["rows"]
        assert [t["line_no"] for t in expected] == list(range(1, len(rows) + 1))
        for row, t in zip(rows, expected, strict=True):
            assert t["source"] == spec.name
            if t["defect"] != "malformed_row":
                assert KEY_OF[spec.name](row) == t["record_key"]
    assert Counter(t["source"] for t in truth) == manifest["rows"]
    defects = Counter((t["source"], t["defect"]) for t in truth if t["defect"])
    assert defects == Counter(
        {(s, d): n for s, counts in manifest["defects"].items() for d, n in counts.items()}
    )
    people = pq.read_table(out / "truth/people.parquet").to_pylist()
    assert len(people) == SMALL
    assert {t["person_id"] for t in truth} <= {p["person_id"] for p in people}
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8")) == manifest


def test_every_defect_kind_appears_in_a_default_sized_run(default_like) -> None:
    out, manifest = default_like
    seen = {t["defect"] for t in _truth(out)}
    assert seen - {None} == set(DEFECT_LABELS[1:])
    assert all(manifest["rows"][spec.name] > 0 for spec in SOURCES)
    kinds = Counter(p["kind"] for p in pq.read_table(out / "truth/people.parquet").to_pylist())
    assert kinds["test_account"] >= 1


def test_encodings_bom_and_headers(small) -> None:
    out, _ = small
    xhs = (out / "sources/xhs_leads/part-00000.csv").read_bytes()
    assert xhs.decode("gbk").startswith("线索ID,手机号,昵称,活动名称,提交时间\n")
    with pytest.raises(UnicodeDecodeError):
        xhs.decode("utf-8")
    crm = (out / "sources/crm_members/part-00000.csv").read_bytes()
    assert crm.startswith(BOM + "会员编号,手机号".encode())
    for name in ("wechat_users", "douyin_leads"):
        data = (out / f"sources/{name}/part-00000.csv").read_bytes()
        assert not data.startswith(BOM)
        data.decode("utf-8")


def test_malformed_and_bad_values_really_are_bad(default_like) -> None:
    out, manifest = default_like
    truth = {(t["file"], t["line_no"]): t["defect"] for t in _truth(out)}

    def parses(value: str, fmt: str) -> bool:
        try:
            datetime.strptime(value.strip(), fmt)
            return True
        except ValueError:
            return False

    for entry in manifest["files"]:
        spec = SOURCE_BY_NAME[entry["source"]]
        time_format = "%Y-%m-%dT%H:%M:%S%z" if spec.iso_time else "%Y-%m-%d %H:%M:%S"
        for line_no, row in enumerate(_rows(out, spec, entry["path"]), start=1):
            defect = truth[(entry["path"], line_no)]
            assert (row is None) == (defect == "malformed_row"), (entry["path"], line_no)
            if row is None:
                continue
            assert parses(row[spec.time_column], time_format) == (defect != "bad_timestamp")
            if spec.amount_column:
                amount = row[spec.amount_column]
                good = amount.replace(".", "", 1).isdigit()
                assert good == (defect != "bad_amount"), amount


def test_phones_are_valid_except_the_invalid_ones(default_like) -> None:
    out, manifest = default_like
    truth = {(t["file"], t["line_no"]): t for t in _truth(out)}
    e164_by_person: dict[str, set[str]] = {}
    checked = Counter()
    for entry in manifest["files"]:
        column = PHONE_COLUMN.get(entry["source"])
        if column is None:
            continue
        spec = SOURCE_BY_NAME[entry["source"]]
        for line_no, row in enumerate(_rows(out, spec, entry["path"]), start=1):
            t = truth[(entry["path"], line_no)]
            if row is None or not row[column]:
                continue
            number = phonenumbers.parse(row[column], "CN")
            valid = phonenumbers.is_valid_number(number)
            assert valid == (t["defect"] != "invalid_phone"), row[column]
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            if t["defect"] == "placeholder_phone":
                assert e164 == f"+86{PLACEHOLDER_PHONE}"
            elif valid and t["defect"] not in ("store_phone", "test_account"):
                e164_by_person.setdefault(e164, set()).add(t["person_id"])
            checked[t["defect"]] += 1
    assert checked[None] > 1000 and checked["invalid_phone"] > 0
    shared = {phone: who for phone, who in e164_by_person.items() if len(who) > 1}
    assert shared == {}, "a real phone belongs to one person only"
    for prefix in MOBILE_PREFIXES:
        number = phonenumbers.parse(f"{prefix}12345678", "CN")
        assert phonenumbers.is_valid_number(number), prefix


def test_duplicates_copy_an_earlier_row_and_late_rows_arrive_later(default_like) -> None:
    out, manifest = default_like
    truth = _truth(out)
    by_file: dict[str, list[dict]] = {}
    for t in truth:
        by_file.setdefault(t["file"], []).append(t)
    for entry in manifest["files"]:
        spec = SOURCE_BY_NAME[entry["source"]]
        rows = (
            _rows(out, spec, entry["path"])
            if spec.fmt == "parquet"
            else _lines(out, spec, entry["path"])
        )
        for i, t in enumerate(by_file[entry["path"]]):
            if t["defect"] == "duplicate_row":
                assert rows[i] in rows[:i], (entry["path"], t["line_no"])
    late = [t for t in truth if t["defect"] == "late_row"]
    assert late and {t["source"] for t in late} == {"orders", "app_events"}
    assert all(
        not t["file"].endswith(f"part-00000.{SOURCE_BY_NAME[t['source']].fmt}") for t in late
    )


def test_most_records_link_and_test_accounts_are_marked(default_like) -> None:
    out, _ = default_like
    truth = _truth(out)
    unlinkable = sum(not t["linkable"] for t in truth) / len(truth)
    assert 0.005 < unlinkable < 0.03
    people = {p["person_id"]: p for p in pq.read_table(out / "truth/people.parquet").to_pylist()}
    for t in truth:
        is_test = people[t["person_id"]]["kind"] == "test_account"
        assert (t["defect"] == "test_account") == is_test
    crm = _rows(out, SOURCE_BY_NAME["crm_members"], "sources/crm_members/part-00000.csv")
    crm_truth = [t for t in truth if t["source"] == "crm_members"]
    test_names = {
        r["姓名"] for r, t in zip(crm, crm_truth, strict=True) if t["defect"] == "test_account"
    }
    assert test_names and all("测试" in name for name in test_names)


def test_every_record_links_except_a_few_orphans(default_like) -> None:
    out, manifest = default_like
    ceiling = linkage_ceiling(out, manifest)
    assert ceiling["recall_ceiling"] >= 0.97, ceiling
    assert ceiling["linkable_agreement"] >= 0.995, ceiling
    assert 0.005 <= ceiling["orphan_share"] <= 0.03, ceiling


def test_junk_identifiers_and_family_devices(default_like) -> None:
    out, manifest = default_like
    truth = {(t["file"], t["line_no"]): t for t in _truth(out)}
    household = {
        p["person_id"]: p["household_id"]
        for p in pq.read_table(out / "truth/people.parquet").to_pylist()
    }
    users_of_device: dict[str, set[str]] = {}
    logins_on_device: dict[str, set[tuple[str, str]]] = {}  # (person, user_id|phone) logged in
    events_on_device: Counter[str] = Counter()
    anonymous_on_device: Counter[str] = Counter()
    buyers_of_store_phone: dict[int, set[str]] = {}
    for entry in manifest["files"]:
        spec = SOURCE_BY_NAME[entry["source"]]
        if spec.name not in ("app_events", "orders"):
            continue
        for line_no, row in enumerate(_rows(out, spec, entry["path"]), start=1):
            t = truth[(entry["path"], line_no)]
            if row is None:
                continue
            if spec.name == "app_events":
                placeholder = t["defect"] == "placeholder_device"
                assert (row["device_id"] == ZERO_DEVICE) == placeholder
                if not placeholder:
                    users_of_device.setdefault(row["device_id"], set()).add(t["person_id"])
                    logins = logins_on_device.setdefault(row["device_id"], set())
                    events_on_device[row["device_id"]] += 1
                    login = row["user_id"] or _identifier("phone", row["phone"])
                    if login:
                        logins.add((t["person_id"], login))
                    else:
                        anonymous_on_device[row["device_id"]] += 1
            elif t["defect"] == "store_phone":
                assert row["member_id"] is None and row["channel"] == "门店" and row["store_id"]
                phone = phonenumbers.parse(row["phone"], "CN").national_number
                buyers_of_store_phone.setdefault(phone, set()).add(t["person_id"])
    shared = {device: who for device, who in users_of_device.items() if len(who) > 1}
    assert shared and all(2 <= len(who) <= 4 for who in shared.values())
    assert all(len({household[p] for p in who}) == 1 for who in shared.values())
    kinds = Counter()  # shared devices by the logins seen there: member ids, phones
    for device, who in shared.items():  # each user logs in there with a member id or phone
        logins = logins_on_device[device]
        assert {person for person, _ in logins} == who, device
        assert len({user for _, user in logins}) == len(who), device
        phones = sum(user.startswith("+") for _, user in logins)
        kinds[(len(logins) - phones, phones)] += 1
    assert kinds[(1, 1)] and sum(n for (m, p), n in kinds.items() if m == 0 and p >= 2), kinds
    assert sum(n for (m, _), n in kinds.items() if m >= 2), kinds  # member-only ones remain
    anonymous = sum(anonymous_on_device[device] for device in shared)
    assert anonymous < 0.1 * sum(events_on_device[device] for device in shared)
    assert 1 <= len(buyers_of_store_phone) <= 3
    assert max(len(who) for who in buyers_of_store_phone.values()) > 5


def test_chunks_split_people_without_losing_any(small, tmp_path: Path) -> None:
    out, manifest = small
    chunked = generate_demo(tmp_path, people=SMALL, seed=7, chunk_people=100)
    people = pq.read_table(out / "truth/people.parquet").column("person_id").to_pylist()
    chunked_people = pq.read_table(tmp_path / "truth/people.parquet").column("person_id")
    assert chunked_people.to_pylist() == people
    assert chunked["people"] == manifest["people"] == SMALL
    crm_parts = [f for f in chunked["files"] if f["source"] == "crm_members"]
    assert [f["path"] for f in crm_parts] == [
        f"sources/crm_members/part-0000{i}.csv" for i in range(3)
    ]


def test_command_line_writes_a_dataset(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--people", "40", "--seed", "3"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["people"] == 40 and manifest["seed"] == 3
    assert (tmp_path / "sources/app_events/part-00000.jsonl").exists()
