"""Text every store must keep byte for byte: shared by the contract tests."""

UNICODE_CONTENTS = [
    "안녕하세요 👋",
    "",
    "𝕳𝖊𝖑𝖑𝖔 𐍈 🀄 🏳️‍🌈 👩‍👩‍👧‍👦",
    "e\u0301 \u00e9 \u200b \ufeff zero-width",
    "line\nbreak\ttab\r\n \\ \" '",
    "123",
    "0x10",
    "  leading and trailing  ",
    "<script>alert(1)</script> & ; %s %(x)s ? {} [] -- /* */",
    "\u0000nul in the middle\u0000",
    "\U0010fffd last plane \U0001f600",
    ("가👋𝕳a" * 250),  # 1,000 characters, 750 of them outside the BMP or Hangul
]
