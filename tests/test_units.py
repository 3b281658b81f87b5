import pytest

from hueyq.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize("text, expected", [
    ("512MiB", 512 * 1024 ** 2), ("1GiB", 1024 ** 3), ("1.5GiB", 3 * 1024 ** 3 // 2),
    ("6GB", 6 * 1000 ** 3), ("6 GB", 6 * 1000 ** 3), ("6 gib", 6 * 1024 ** 3),
    ("100", 100), (4096, 4096), ("10kb", 10000), ("3KiB", 3072), ("0", 0),
])
def test_sizes_accept_binary_and_decimal_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["6 gigs", "GiB", "-1GiB", "1.2.3MB", "", True])
def test_bad_sizes_are_refused_with_a_reason(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize("text, expected", [
    ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0),
    ("1.5s", 1.5), (10, 10.0), ("7", 7.0),
])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["5 minutes", "s", "-3s", False])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_formatting_is_what_messages_show():
    assert format_size(1395864371) == "1.3 GiB"
    assert format_size(1024 ** 3) == "1.0 GiB"
    assert format_size(512) == "512 B"
    assert format_duration(0.0123) == "12ms"
    assert format_duration(75) == "1m15s"
    assert format_duration(30) == "30s"
    assert format_size(None) == "-"
