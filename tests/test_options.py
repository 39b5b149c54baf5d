"""``twistd imserver`` options for files become Config fields; bad values are refused."""
import pytest
from twisted.python import usage

from imserver.config import Config
from imserver.options import Options


def parse(*argv):
    options = Options()
    options.parseOptions(list(argv))
    return options.config()


def test_file_options_defaults_and_values():
    default = parse()
    assert (default.max_file_size, default.user_quota, default.upload_expiry,
            default.instant_scope, default.upload_sync) == (Config.max_file_size, Config.user_quota,
                                                            Config.upload_expiry, "global", "fsync")
    config = parse("--max-file-size", "1000", "--user-quota", "0", "--upload-expiry", "60",
                   "--instant-upload-scope", "user", "--upload-sync", "none")
    assert (config.max_file_size, config.user_quota, config.upload_expiry,
            config.instant_scope, config.upload_sync) == (1000, 0, 60.0, "user", "none")


@pytest.mark.parametrize("argv", [["--instant-upload-scope", "everyone"], ["--user-quota", "-1"],
                                  ["--upload-expiry", "0"], ["--max-file-size", "-5"],
                                  ["--upload-sync", "fdatasync"], ["--upload-sync", ""]])
def test_bad_file_options_are_refused(argv):
    with pytest.raises(usage.UsageError):
        parse(*argv)


def test_download_rate_option():
    assert parse().download_rate == 0
    assert parse("--download-rate", "65536").download_rate == 65536
    with pytest.raises(usage.UsageError):
        parse("--download-rate", "-1")
