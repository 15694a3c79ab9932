"""Each value as a Home Assistant entity: names, device classes and units the Energy dashboard takes."""

from __future__ import annotations

from edge.agent.entities import appliance_name, entity_key, mbus_spec, slug, value_spec


def test_appliance_names_read_well():
    assert appliance_name("washing_machine") == "Washing machine"
    assert appliance_name("tv") == "TV" and appliance_name("fridge") == "Fridge"


def test_m_bus_sub_meters_get_the_units_the_energy_dashboard_takes():
    gas, water2, heat = mbus_spec("gas_m3"), mbus_spec("water_2_m3"), mbus_spec("heat_gj")
    assert (gas.name, gas.device_class, gas.unit, gas.state_class) == ("Gas", "gas", "m³", "total_increasing")
    assert (water2.name, water2.unit) == ("Water 2", "m³") and (heat.device_class, heat.unit) == ("energy", "GJ")
    assert mbus_spec("gas_gj") is None and mbus_spec("heat_m3") is None and mbus_spec("oil_l") is None
    assert value_spec("import_kwh") is None  # an alias of energy_kwh: never its own entity
    assert value_spec("power_w").unit == "W"


def test_entity_keys_and_slugs_keep_unique_ids_stable():
    assert entity_key("energy_kwh") == "energy" and entity_key("power_l1_w") == "power_l1"
    assert entity_key("gas_m3") == "gas" and entity_key("tariff") == "tariff"
    assert slug("Washing machine") == "washing_machine" and slug("--") == "appliance"
