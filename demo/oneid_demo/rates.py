"""Every size, share and defect rate of the demo data, in one place.

Shares marked "per person" are drawn once per person; all others are per record (row). The
defect rates are deliberately small: the data should look like a real brand's export, where
most rows are fine and each kind of mess is rare but present.

The records of a person are globally linkable, as those of engaged customers are: every record
shares a member id, real phone, unionid or own device (directly or through other records) with
the person's other records, except the explicit orphans of ORPHAN_RATES and the rows that junk
values or unreadable defects cut off.
"""

from __future__ import annotations

GENERATOR_VERSION = "1.2.0"

# --- time ---------------------------------------------------------------------------------
TIMEZONE = "Asia/Shanghai"
UTC_OFFSET = "+08:00"
WINDOW_START = "2024-01-01T00:00:00"  # local time, inclusive
WINDOW_END = "2025-06-30T23:59:59"  # local time, inclusive
FIRST_SEEN_MARGIN_DAYS = 30  # a person is first seen at least this long before the window end
# Relative weight of each local hour of the day (00h..23h): evenings are busiest.
HOUR_WEIGHTS = (
    1.0, 0.5, 0.3, 0.2, 0.2, 0.3, 0.8, 1.5, 2.5, 3.0, 3.2, 3.5,
    4.0, 3.6, 3.2, 3.2, 3.4, 3.6, 4.0, 4.5, 5.5, 6.0, 5.0, 3.0,
)  # fmt: skip
PROMO_DAYS = ("2024-03-08", "2024-06-18", "2024-11-11", "2024-12-12", "2025-03-08", "2025-06-18")
PROMO_ORDER_SHARE = 0.15  # orders placed on a promotion day (when the buyer already exists)

# --- people (per person) ------------------------------------------------------------------
PHONE_COUNT_WEIGHTS = (0.70, 0.22, 0.08)  # 1, 2 or 3 phones
# Only members use more than one phone, and each extra phone is first typed in a readable row
# that also carries the member id (a CRM row or a logged-in order), so it links.
SECOND_PHONE_MIN_RECORDS = 4  # a 2nd phone is used only if the member has >= 4 phone records
THIRD_PHONE_MIN_RECORDS = 6  # ... and a 3rd one if >= 6 (each extra phone then sits in 2 rows)
GENDER_WEIGHTS = (0.30, 0.65, 0.05)  # 男, 女, 未知 (a beauty brand: mostly women)
BIRTHDAY_SHARE = 0.90
BIRTH_DATE_RANGE = ("1965-01-01", "2007-06-30")
EMAIL_SHARE = 0.55
EMAIL_MIXED_CASE_SHARE = 0.30
EMAIL_WHITESPACE_SHARE = 0.15
EMAIL_DOMAIN_WEIGHTS = {
    "qq.com": 0.40,
    "163.com": 0.25,
    "126.com": 0.10,
    "gmail.com": 0.13,
    "outlook.com": 0.12,
}

MEMBER_SHARE = 0.70  # ~3,500 CRM members per 5,000 people
BUYER_SHARE_MEMBER = 0.72  # together ~60 % of people buy
BUYER_SHARE_GUEST = 0.32
ORDER_COUNT_WEIGHTS = (30, 20, 14, 10, 8, 7, 6, 5)  # 1..8 orders per buyer
MEMBER_ORDER_SHARE = 0.75  # a member's orders placed while logged in (carry member_id)
MEMBER_ORDER_PHONE_SHARE = 0.90  # member orders that also carry a phone (guest orders always do)
APP_SHARE_MEMBER = 0.70  # ~50 % of people use the app: members (and PHONE_LOGIN households)
EVENT_COUNT_RANGE = (5, 40)  # inclusive
DEVICE_COUNT_WEIGHTS = (0.75, 0.20, 0.05)  # 1..3 own devices of an app user
DEVICE_SLOT_WEIGHTS = (0.70, 0.20, 0.10)  # how often each own device is used
IOS_SHARE = 0.35  # devices reporting an IDFA; the rest report an OAID
LOGIN_SHARE_RANGE = (0.40, 0.95)  # per member: share of their events sent while logged in
# (every device a member uses sees at least one logged-in event of theirs)
HOUSEHOLD_PEOPLE_SHARE = 0.05  # people living in a 2-4 person household sharing one device
HOUSEHOLD_SIZE_WEIGHTS = (0.50, 0.30, 0.20)  # 2, 3, 4 people
SHARED_DEVICE_EVENT_SHARE = 0.30  # events a household member sends from the family device
SHARED_DEVICE_LOGIN_SHARE = 0.95  # of those, sent logged in
# Households whose people who are not CRM members use the family device too, logging in with
# their phone number (an SMS code) and sending all their events from it: one device then holds
# a member id and another person's phone, or two people's phones (the precision trap of
# docs/identity.md, "shared devices").
PHONE_LOGIN_HOUSEHOLD_SHARE = 0.50
WECHAT_SHARE = 0.60
SECOND_APPID_SHARE = 0.65  # WeChat users seen in two appids
APPID_WEIGHTS = (0.60, 0.28, 0.12)  # wx_mini_01, wx_oa_01, wx_mini_02
# A WeChat user with records elsewhere always has a mini-program row (one is added to a lone
# official-account follower) and authorised a phone in one mini-program row, which also holds
# the unionid; official-account rows always hold it; other mini-program rows lacking it hold a
# phone instead.
UNIONID_SHARE = 0.92  # other mini-program rows carrying the unionid
WECHAT_PHONE_SHARE = 0.65  # other mini-program rows with an authorised phone (accounts: none)
WECOM_SHARE_WECHAT = 0.50  # ~30 % of people are WeCom contacts, all of them WeChat users
# A contact always holds the unionid (orphans excepted); a phone in the remark is not an
# identifier the pipeline reads.
WECOM_REMARK_WEIGHTS = (0.40, 0.38, 0.22)  # remark holds a phone, a name only, nothing
DOUYIN_SHARE = 0.15
SECOND_DOUYIN_LEAD_SHARE = 0.10
XHS_SHARE = 0.10

# --- orphans (per record) -----------------------------------------------------------------
# Records that share nothing with the rest of their person: a guest order or lead typed with an
# old phone seen nowhere else, an anonymous device seen once, a WeChat row without unionid and
# phone, a WeCom contact without unionid. At most one per person and source, and only for
# persons with more than ORPHAN_MIN_RECORDS records, so the rest stays the largest cluster.
ORPHAN_RATES = {
    "orders": 0.050,  # of guest orders
    "app_events": 0.0025,
    "wechat_users": 0.120,  # of rows that are not the phone-authorising one
    "douyin_leads": 0.200,
    "xhs_leads": 0.200,
    "wecom_contacts": 0.120,
}
ORPHAN_MIN_RECORDS = 4

# --- test accounts --------------------------------------------------------------------------
TEST_ACCOUNTS_MAX = 5
PEOPLE_PER_TEST_ACCOUNT = 100  # 1 test account per 100 people, at most TEST_ACCOUNTS_MAX
TEST_MEMBER_IDS = 4  # member ids registered by each test account (all with its phone)
TEST_ORDER_RANGE = (20, 60)
TEST_EVENT_RANGE = (80, 200)
TEST_LEAD_RANGE = (3, 8)  # per lead source
TEST_DEVICES = 3

# --- phone formats (per record), see phones.PHONE_FORMATS for the patterns ------------------
PHONE_FORMAT_WEIGHTS = {
    #                   plain +86  +86_sp 86-  0086  dash space fullw padded
    "crm_members": (0.56, 0.10, 0.05, 0.03, 0.03, 0.10, 0.04, 0.04, 0.05),
    "orders": (0.75, 0.10, 0.02, 0.02, 0.02, 0.03, 0.02, 0.02, 0.02),
    "app_events": (0.85, 0.15, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),  # SMS-code logins
    "wechat_users": (0.90, 0.10, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "douyin_leads": (0.80, 0.04, 0.02, 0.02, 0.02, 0.04, 0.02, 0.02, 0.02),
    "xhs_leads": (0.80, 0.04, 0.02, 0.02, 0.02, 0.04, 0.02, 0.02, 0.02),
    "wecom_contacts": (0.45, 0.05, 0.05, 0.05, 0.05, 0.15, 0.10, 0.10, 0.0),
}

# --- defects (per record; a row carries at most one defect) --------------------------------
# Phone defects replace the real phone of a phone-bearing row.
PHONE_DEFECT_RATES = {
    "crm_members": {"placeholder_phone": 0.010, "invalid_phone": 0.005},
    "orders": {"placeholder_phone": 0.010, "invalid_phone": 0.005},
    "douyin_leads": {"placeholder_phone": 0.010, "invalid_phone": 0.005},
    "xhs_leads": {"placeholder_phone": 0.010, "invalid_phone": 0.005},
    "wecom_contacts": {"invalid_phone": 0.010},
}
STORE_PHONE_RATE = 0.02  # guest orders where the store typed its own mobile
STORE_PHONES = 3
# Value and syntax defects, drawn among the rows still clean after the phone defects.
ROW_DEFECT_RATES = {
    "crm_members": {"malformed_row": 0.002, "bad_timestamp": 0.001},
    "orders": {"bad_amount": 0.0015, "bad_timestamp": 0.0015},
    "app_events": {"malformed_row": 0.002, "bad_timestamp": 0.001, "placeholder_device": 0.005},
    "wechat_users": {"malformed_row": 0.002, "bad_timestamp": 0.001},
    "douyin_leads": {"malformed_row": 0.002, "bad_timestamp": 0.001},
    "xhs_leads": {"malformed_row": 0.002, "bad_timestamp": 0.001},
    "wecom_contacts": {"malformed_row": 0.002, "bad_timestamp": 0.001},
}
DUPLICATE_ROW_RATE = 0.01  # clean rows exported twice (the second copy is the defect)
DUPLICATE_MAX_GAP = 30  # the copy appears up to this many rows after the original
# Late rows: orders / events of the last LATE_WINDOW_DAYS that arrive in the next part file.
LATE_WINDOW_DAYS = 5
LATE_SHARE_OF_RECENT = 0.30
