"""Where and how each source is written: folders, file formats, encodings and columns.

Other code (conf, ingest, tests) is written against these names: change them only together.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES_DIR = "sources"
TRUTH_DIR = "truth"
TRUTH_RECORDS = "truth/records.parquet"
TRUTH_PEOPLE = "truth/people.parquet"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SourceSpec:
    """One source export."""

    name: str
    fmt: str  # csv | jsonl | parquet
    columns: tuple[str, ...]
    time_column: str  # gets the unparseable value of a bad_timestamp row
    iso_time: bool = False  # time written as YYYY-MM-DDTHH:MM:SS+08:00
    encoding: str = "utf-8"
    bom: bool = False
    free_text_column: str | None = None  # where a stray comma splits a malformed CSV row
    amount_column: str | None = None  # gets the bad value of a bad_amount row
    late_rows: bool = False  # some recent rows arrive in the next part file

    def part_path(self, index: int) -> str:
        """Relative path of part file number index."""
        return f"{SOURCES_DIR}/{self.name}/part-{index:05d}.{self.fmt}"


CRM_MEMBERS = SourceSpec(
    name="crm_members",
    fmt="csv",
    columns=(
        "会员编号",
        "手机号",
        "邮箱",
        "姓名",
        "性别",
        "生日",
        "注册门店",
        "注册渠道",
        "注册时间",
        "更新时间",
    ),
    time_column="注册时间",
    bom=True,
    free_text_column="姓名",
)
ORDERS = SourceSpec(
    name="orders",
    fmt="parquet",
    columns=(
        "order_id",
        "member_id",
        "phone",
        "paid_amount",
        "currency",
        "categories",
        "order_time",
        "channel",
        "status",
        "refund_amount",
        "store_id",
    ),
    time_column="order_time",
    amount_column="paid_amount",
    late_rows=True,
)
APP_EVENTS = SourceSpec(
    name="app_events",
    fmt="jsonl",
    columns=(
        "event_id",
        "device_id",
        "device_type",
        "user_id",
        "phone",
        "event",
        "ts",
        "page",
        "category",
    ),
    time_column="ts",
    iso_time=True,
    late_rows=True,
)
WECHAT_USERS = SourceSpec(
    name="wechat_users",
    fmt="csv",
    columns=("appid", "openid", "unionid", "phone", "nickname", "app_type", "subscribed_at"),
    time_column="subscribed_at",
    free_text_column="nickname",
)
DOUYIN_LEADS = SourceSpec(
    name="douyin_leads",
    fmt="csv",
    columns=("lead_id", "phone", "nickname", "campaign", "created_at"),
    time_column="created_at",
    free_text_column="nickname",
)
XHS_LEADS = SourceSpec(
    name="xhs_leads",
    fmt="csv",
    columns=("线索ID", "手机号", "昵称", "活动名称", "提交时间"),
    time_column="提交时间",
    encoding="gbk",
    free_text_column="昵称",
)
WECOM_CONTACTS = SourceSpec(
    name="wecom_contacts",
    fmt="jsonl",
    columns=("external_userid", "unionid", "staff_id", "add_time", "remark"),
    time_column="add_time",
    iso_time=True,
)

SOURCES: tuple[SourceSpec, ...] = (
    CRM_MEMBERS,
    ORDERS,
    APP_EVENTS,
    WECHAT_USERS,
    DOUYIN_LEADS,
    XHS_LEADS,
    WECOM_CONTACTS,
)
SOURCE_BY_NAME = {spec.name: spec for spec in SOURCES}
