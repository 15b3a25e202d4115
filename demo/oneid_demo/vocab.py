"""Word lists of the demo data: names, stores, channels, categories, campaigns, nicknames.

Every value here is free of commas, quotes and backslashes, so CSV and JSON lines can be built
without quoting; everything used by the Xiaohongshu export is GBK-encodable.
"""

from __future__ import annotations

# (surname, pinyin, relative frequency)
SURNAMES = (
    ("王", "wang", 7.1), ("李", "li", 7.0), ("张", "zhang", 6.7), ("刘", "liu", 5.4),
    ("陈", "chen", 4.5), ("杨", "yang", 3.1), ("黄", "huang", 2.2), ("赵", "zhao", 2.1),
    ("吴", "wu", 2.0), ("周", "zhou", 1.9), ("徐", "xu", 1.5), ("孙", "sun", 1.5),
    ("马", "ma", 1.4), ("朱", "zhu", 1.3), ("胡", "hu", 1.3), ("郭", "guo", 1.2),
    ("何", "he", 1.2), ("高", "gao", 1.1), ("林", "lin", 1.1), ("罗", "luo", 0.9),
    ("郑", "zheng", 0.9), ("梁", "liang", 0.9), ("谢", "xie", 0.8), ("宋", "song", 0.8),
    ("唐", "tang", 0.8), ("许", "xu", 0.7), ("韩", "han", 0.7), ("冯", "feng", 0.7),
    ("邓", "deng", 0.7), ("曹", "cao", 0.6), ("彭", "peng", 0.6), ("曾", "zeng", 0.6),
    ("肖", "xiao", 0.6), ("田", "tian", 0.5), ("董", "dong", 0.5), ("袁", "yuan", 0.5),
    ("潘", "pan", 0.5), ("于", "yu", 0.5), ("蒋", "jiang", 0.5), ("蔡", "cai", 0.5),
)  # fmt: skip

# (character, pinyin) of given names, by the gender they are most used for
GIVEN_FEMALE = (
    ("丽", "li"), ("静", "jing"), ("敏", "min"), ("燕", "yan"), ("艳", "yan"), ("娟", "juan"),
    ("霞", "xia"), ("芳", "fang"), ("婷", "ting"), ("雪", "xue"), ("琳", "lin"), ("颖", "ying"),
    ("欣", "xin"), ("怡", "yi"), ("悦", "yue"), ("佳", "jia"), ("晶", "jing"), ("倩", "qian"),
    ("璐", "lu"), ("萱", "xuan"), ("梦", "meng"), ("瑶", "yao"), ("雅", "ya"), ("诗", "shi"),
    ("涵", "han"), ("可", "ke"), ("思", "si"), ("雨", "yu"), ("晓", "xiao"), ("妍", "yan"),
)  # fmt: skip
GIVEN_MALE = (
    ("伟", "wei"), ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"),
    ("杰", "jie"), ("涛", "tao"), ("斌", "bin"), ("超", "chao"), ("明", "ming"), ("刚", "gang"),
    ("平", "ping"), ("辉", "hui"), ("鹏", "peng"), ("华", "hua"), ("飞", "fei"), ("鑫", "xin"),
    ("波", "bo"), ("宇", "yu"), ("浩", "hao"), ("凯", "kai"), ("健", "jian"), ("俊", "jun"),
    ("帆", "fan"), ("帅", "shuai"), ("旭", "xu"), ("宁", "ning"), ("龙", "long"), ("林", "lin"),
)  # fmt: skip
GENDERS = ("男", "女", "未知")

TEST_ACCOUNT_NAMES = ("测试账号", "测试会员", "门店测试", "QA测试", "测试-勿删")

STORES = (
    "SH001", "SH002", "SH003", "SH004", "SH005", "SH006", "BJ001", "BJ002", "BJ003", "BJ004",
    "GZ001", "GZ002", "GZ003", "SZ001", "SZ002", "SZ003", "HZ001", "HZ002", "CD001", "CD002",
    "NJ001", "WH001",
)  # fmt: skip
STAFF_PER_STORE = 3  # WeCom staff ids look like sh001_ba02 (ba = beauty advisor)

CRM_CHANNELS = ("门店", "小程序", "天猫", "京东", "抖音")
CRM_CHANNEL_WEIGHTS = (0.35, 0.30, 0.15, 0.10, 0.10)
ORDER_CHANNELS = ("天猫", "京东", "小程序", "门店", "抖音小店")
ORDER_CHANNEL_WEIGHTS = (0.30, 0.15, 0.20, 0.25, 0.10)
STORE_CHANNEL = "门店"
ORDER_STATUSES = ("paid", "refunded", "partially_refunded", "cancelled")
ORDER_STATUS_WEIGHTS = (0.85, 0.05, 0.04, 0.06)
TEST_ORDER_STATUS_WEIGHTS = (0.30, 0.30, 0.10, 0.30)

CATEGORIES = ("护肤", "彩妆", "香水", "身体护理", "个护", "男士护理", "礼盒套装", "美容仪器")
CATEGORY_WEIGHTS = (0.30, 0.22, 0.10, 0.10, 0.10, 0.06, 0.08, 0.04)
ORDER_CATEGORY_COUNT_WEIGHTS = (0.60, 0.30, 0.10)  # 1, 2 or 3 categories per order

# (event, weight, pages it is sent from, share of events that carry a category)
EVENTS = (
    ("app_open", 0.18, ("home", "splash"), 0.0),
    ("view_item", 0.38, ("item_detail", "item_list"), 1.0),
    ("add_cart", 0.12, ("item_detail", "cart"), 1.0),
    ("search", 0.17, ("search", "search_result"), 0.5),
    ("share", 0.05, ("item_detail", "activity"), 1.0),
    ("purchase", 0.10, ("order_confirm", "pay_success"), 1.0),
)

# (appid, app_type, openid prefix): openids of one appid share a prefix, as real ones do
WECHAT_APPS = (
    ("wx_mini_01", "mini_program", "oK3xT"),
    ("wx_oa_01", "official_account", "o9bQm"),
    ("wx_mini_02", "mini_program", "oLp2W"),
)

DOUYIN_CAMPAIGNS = (
    "618大促-信息流", "新品首发-直播间", "会员日-达人种草", "双11预售-搜索广告", "小样申领-表单",
)  # fmt: skip
XHS_CAMPAIGNS = ("新品种草-表单", "试用装申领", "门店体验预约", "38女神节-笔记引流")

NICK_HEADS = ("小", "阿", "", "大", "爱吃", "Miss", "", "可爱", "momo", "")
NICK_CORES = (
    "鱼", "猫", "兔", "熊", "橙子", "柚子", "Lily", "Coco", "晴天", "向日葵", "小确幸", "奶茶",
    "星星", "Yuki", "Amy", "桃子", "菠萝", "月亮", "Vivian", "西瓜", "饺子", "Kiki", "云朵",
)  # fmt: skip
NICK_TAILS_GBK = ("", "", "", "酱", "呀", "吖", "2024", "_", "同学", "77")
NICK_TAILS_UTF8 = (*NICK_TAILS_GBK, "🌸", "✨", "🍑")

WECOM_REMARKS = ("老客户", "VIP", "门店新客", "直播间来的", "生日会员", "敏感肌")
HONORIFICS = ("先生", "女士", "女士")  # indexed by gender (未知 -> 女士)
