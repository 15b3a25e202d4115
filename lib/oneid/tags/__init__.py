"""Tag tables: RFM, value, preference and behaviour tags per OneID, one ``dt`` partition per day."""
