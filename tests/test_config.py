"""Settings: bad values and unsafe production defaults stop the start, naming the variable."""

import pytest

from fansipan.config import ConfigError, Settings

PROD_OK = {
    "FANSIPAN_ENV": "production",
    "FANSIPAN_MQTT_USERNAME": "collector",
    "FANSIPAN_MQTT_PASSWORD": "s3cret-from-vault",
    "FANSIPAN_STORE": "influx2",
    "FANSIPAN_INFLUX_TOKEN": "token-from-vault",
    "FANSIPAN_INFLUX_ORG": "laocai",
}


def test_development_defaults_start():
    s = Settings.from_env({})
    assert s.store == "sqlite" and s.mqtt_host_port == ("127.0.0.1", 1883)


def test_production_with_credentials_starts():
    s = Settings.from_env(PROD_OK)
    assert s.env == "production" and "s3cret" not in repr(s)  # secrets stay out of logs


@pytest.mark.parametrize(
    "change, message",
    [
        ({"FANSIPAN_MQTT_PASSWORD": ""}, "FANSIPAN_MQTT_PASSWORD: production refuses anonymous MQTT"),
        ({"FANSIPAN_MQTT_PASSWORD": "CHANGE_ME"}, "FANSIPAN_MQTT_PASSWORD: still the CHANGE_ME placeholder"),
        ({"FANSIPAN_STORE": "sqlite"}, "FANSIPAN_STORE: production stores telemetry in InfluxDB"),
        ({"FANSIPAN_INFLUX_TOKEN": ""}, "FANSIPAN_INFLUX_TOKEN: production needs a real InfluxDB token"),
        ({"FANSIPAN_INFLUX_TOKEN": "CHANGE_ME_token"}, "FANSIPAN_INFLUX_TOKEN: production needs a real InfluxDB token"),
        ({"FANSIPAN_STORE": "influx1"}, "FANSIPAN_INFLUX_PASSWORD: production refuses an InfluxDB 1.x without authentication"),
    ],
)
def test_production_refuses_unsafe_defaults(change, message):
    with pytest.raises(ConfigError) as exc:
        Settings.from_env({**PROD_OK, **change})
    assert message in str(exc.value)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"FANSIPAN_ENV": "prod"}, "FANSIPAN_ENV: 'prod' is not one of development, production"),
        ({"FANSIPAN_STORE": "influx"}, "FANSIPAN_STORE: 'influx' is not one of sqlite, influx1, influx2"),
        ({"FANSIPAN_MQTT_URL": "tcp://broker:1883"}, "FANSIPAN_MQTT_URL: 'tcp://broker:1883' is not mqtt://host:port"),
        ({"FANSIPAN_MQTT_PROTOCOL": "4"}, "FANSIPAN_MQTT_PROTOCOL: '4': expected 5 or 3.1.1"),
        ({"FANSIPAN_BATCH_SIZE": "lots"}, "FANSIPAN_BATCH_SIZE='lots': expected a whole number"),
        ({"FANSIPAN_BATCH_SIZE": "70000"}, "FANSIPAN_BATCH_SIZE: 70000: expected 1..65000"),
        ({"FANSIPAN_MQTT_SHARE_GROUP": "a/b"}, "FANSIPAN_MQTT_SHARE_GROUP: 'a/b': use letters, digits"),
        ({"FANSIPAN_STORE": "influx2"}, "FANSIPAN_INFLUX_TOKEN: InfluxDB 2.x/3.x needs an API token"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(env)
    assert message in str(exc.value)
