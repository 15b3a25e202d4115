"""Amounts in one currency: facts in another are converted with a rate table by date.

Silver facts carry the ``currency`` of their amounts (``sources.<s>.currency`` or
``currency_field``). Tags count money in ``tags.currency.reporting``; a fact in another
currency has each decimal column multiplied by the rate of its business day (the latest rate on
or before it, from ``tags.currency.rates``) and rounded to cents. A fact with no rate fails the
run, naming the currency and the first day without one: summing dollars as yuan silently is
the error this module exists to prevent.
"""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from oneid.conf.pipeline import CURRENCY_CODE, CURRENCY_COLUMN, PipelineConf
from oneid.conf.tags import CurrencyConf
from oneid.errors import ConfigError, DataContractError

RATES_SCHEMA = "currency string, event_date date, _rate decimal(38,18)"
NO_RATE = "_no_rate"
AMOUNT = T.DecimalType(18, 2)


def load_rates(spark: SparkSession, conf: CurrencyConf, until: dt.date) -> DataFrame | None:
    """One row per (currency, day) from each currency's first rate up to ``until``: the latest
    rate on or before that day (read on the driver: a rate table is small)."""
    if not conf.rates:
        return None
    path = Path(conf.rates)
    if not path.is_file():
        raise ConfigError(f"tags.currency.rates: {conf.rates} is not a file")
    by_currency: dict[str, dict[dt.date, Decimal]] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            try:
                day = dt.date.fromisoformat(row["date"].strip())
                code = row["currency"].strip().upper()
                rate = Decimal(row["rate"].strip())
            except (KeyError, AttributeError, ValueError, InvalidOperation):
                raise ConfigError(
                    f"{conf.rates}:{number}: expected columns date (YYYY-MM-DD), currency, rate"
                ) from None
            if not CURRENCY_CODE.match(code) or rate <= 0:
                raise ConfigError(f"{conf.rates}:{number}: {code!r} / {rate}: not a code / rate")
            by_currency.setdefault(code, {})[day] = rate
    rows = []
    for code, rates in sorted(by_currency.items()):
        day, current = min(rates), None
        while day <= until:
            current = rates.get(day, current)
            rows.append((code, day, current))
            day += dt.timedelta(days=1)
    return spark.createDataFrame(rows, RATES_SCHEMA)


def in_reporting_currency(
    facts: DataFrame, conf: CurrencyConf, rates: DataFrame | None
) -> DataFrame:
    """``facts`` (with ``event_date``) with every decimal column in the reporting currency and
    ``_no_rate`` true where a foreign amount found no rate; facts without ``currency`` as
    they are."""
    if CURRENCY_COLUMN not in facts.columns:
        return facts
    amounts = [f.name for f in facts.schema.fields if isinstance(f.dataType, T.DecimalType)]
    foreign = F.col(CURRENCY_COLUMN) != F.lit(conf.reporting)
    if rates is None:
        return facts.withColumn(NO_RATE, foreign)
    joined = facts.join(F.broadcast(rates), [CURRENCY_COLUMN, "event_date"], "left")
    for amount in amounts:
        converted = F.round(F.col(amount) * F.col("_rate"), 2).cast(AMOUNT)
        joined = joined.withColumn(amount, F.when(foreign, converted).otherwise(F.col(amount)))
    return joined.withColumn(NO_RATE, foreign & F.col("_rate").isNull()).drop("_rate")


def require_rates(facts: DataFrame, name: str, conf: CurrencyConf) -> None:
    """DataContractError when a fact of ``facts`` (:func:`in_reporting_currency`) found no rate."""
    if NO_RATE not in facts.columns:
        return
    missing = (
        facts.where(F.col(NO_RATE))
        .groupBy(CURRENCY_COLUMN)
        .agg(F.count(F.lit(1)).alias("n"), F.min("event_date").alias("first"))
        .orderBy(CURRENCY_COLUMN)
        .collect()
    )
    if missing:
        listed = ", ".join(f"{r[CURRENCY_COLUMN]}: {r['n']} from {r['first']}" for r in missing)
        where = f"in {conf.rates}" if conf.rates else "(tags.currency.rates is not set)"
        raise DataContractError(
            f"silver.{name}: facts in another currency than {conf.reporting} have no rate "
            f"{where}: {listed}; add the rates, or set tags.currency.reporting"
        )


def undeclared_conversions(pipeline: PipelineConf, facts: str) -> list[str]:
    """Sources of ``facts`` whose declared currency is not the reporting one while no rate
    table is set: the tags job could not count their amounts."""
    conf = pipeline.tags.currency
    if conf.rates:
        return []
    declared = pipeline.amount_currencies(facts)
    return [
        f"{name} ({code})" for name, code in declared.items() if code not in {conf.reporting, "*"}
    ]
