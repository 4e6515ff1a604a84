"""Pickles of the rules' records and states as plain frozen slotted dataclasses wrote them.

Written by the code of a094ce5 (every record an ``@record`` class, before native
records), protocol 4, by ``tests/rules/test_record_pickles.py``'s ``_objects()``
built there: recovery snapshots of that code must keep loading in both builds.
"""

OLD_PICKLES = {
    "opportunity": (
        "gASVEwEAAAAAAACMFW1lZGlhdGlvbi5ydWxlcy5tb2RlbJSMC09wcG9ydHVuaXR5lJOUKYGUXZQojBowMUpEMDAw"
        "MDAwMDAwMDAwMDAwMDAwMDAwMZSMBWFwcF8xlIwEaG9tZZSMIGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRk"
        "ZGRklIoGAGjlz4sBigYGZ+XPiwFLA0sqfZSMB2NvdW50cnmUjAJVU5RzjAVkZWxfMZSMBGZpbGyUaACMDldhdGVy"
        "ZmFsbEVudHJ5lJOUKYGUXZQojAVuZXRfYZRN3AVNIANlYmgPKYGUXZQojAVuZXRfYpRNhANNIANlYoaUigZgUubP"
        "iwFKQHcbAE0wdUrgkwQASwJLEWViLg=="
    ),
    "event": (
        "gASVpwAAAAAAAACMFW1lZGlhdGlvbi5ydWxlcy5tb2RlbJSMBUV2ZW50lJOUKYGUXZQojAJlMZSMBWFwcF8xlIwa"
        "MDFKRDAwMDAwMDAwMDAwMDAwMDAwMDAwMDGUjAppbXByZXNzaW9ulIoG6Gvlz4sBigboa+XPiwGKBvxr5c+LAYwF"
        "bmV0X2GUTcQJjANVU0SUfZQojAFhlEsBjAFilIwBeJR1SwFLBUMDcmF3lGViLg=="
    ),
    "bare_event": (
        "gASVfgAAAAAAAACMFW1lZGlhdGlvbi5ydWxlcy5tb2RlbJSMBUV2ZW50lJOUKYGUXZQojAJlMpSMBWFwcF8xlIwa"
        "MDFKRDAwMDAwMDAwMDAwMDAwMDAwMDAwMDGUjAZjbG9zZWSUigbQb+XPiwGKBtBv5c+LAYoG5G/lz4sBTk5OfZRO"
        "Tk5lYi4="
    ),
    "policy": (
        "gASVRgAAAAAAAACMFW1lZGlhdGlvbi5ydWxlcy5tb2RlbJSMBlBvbGljeZSTlCmBlF2UKEpAdxsATTB1SuCTBABN"
        "iBNKgO42AE30AUsHZWIu"
    ),
    "closed": (
        "gASVsQIAAAAAAACMFW1lZGlhdGlvbi5ydWxlcy5tb2RlbJSMEUNsb3NlZE9wcG9ydHVuaXR5lJOUKYGUXZQoaACM"
        "C09wcG9ydHVuaXR5lJOUKYGUXZQojBowMUpEMDAwMDAwMDAwMDAwMDAwMDAwMDAwMZSMBWFwcF8xlIwEaG9tZZSM"
        "IGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRklIoGAGjlz4sBigYGZ+XPiwFLA0sqfZSMB2NvdW50cnmU"
        "jAJVU5RzjAVkZWxfMZSMBGZpbGyUaACMDldhdGVyZmFsbEVudHJ5lJOUKYGUXZQojAVuZXRfYZRN3AVNIANlYmgT"
        "KYGUXZQojAVuZXRfYpRNhANNIANlYoaUigZgUubPiwFKQHcbAE0wdUrgkwQASwJLEWViaACMC1N0b3JlZEV2ZW50"
        "lJOUKYGUXZQoaACMBUV2ZW50lJOUKYGUXZQojAJlMZRoCmgJjAppbXByZXNzaW9ulIoG6Gvlz4sBigboa+XPiwGK"
        "Bvxr5c+LAWgWTcQJjANVU0SUfZQojAFhlEsBjAFilIwBeJR1SwFLBUMDcmF3lGViiU5lYmgcKYGUXZQoaCApgZRd"
        "lCiMAmUylGgKaAmMBmNsb3NlZJSKBtBv5c+LAYoG0G/lz4sBigbkb+XPiwFOTk59lE5OTmViiU5lYoaUaACMDUFy"
        "Y2hpdmVSZWNvcmSUk5QpgZRdlChoCWgKaAuKBgBo5c+LAYoGAOXlz4sBjAxjbG9zZWRfZXZlbnSUjAlpbXByZXNz"
        "ZWSUiWgWTcQJaCV9lChoJEsBaDBLAXVLAksASwOMAnIxlIxAOGEyZjQwODA1MTc1ZTEwNDJlYWRiOTNkMDQ5NzIx"
        "ZmM5MTEyNDVjNWZhN2VlNjg0ZmE3ZTQwMTk5MGU0MGMzMJRlYmViLg=="
    ),
    "open_state": (
        "gASV5QEAAAAAAACMFW1lZGlhdGlvbi5ydWxlcy5zdGF0ZZSMBE9wZW6Uk5QpgZRdlCiMGjAxSkQwMDAwMDAwMDAw"
        "MDAwMDAwMDAwMDAxlIwVbWVkaWF0aW9uLnJ1bGVzLm1vZGVslIwLT3Bwb3J0dW5pdHmUk5QpgZRdlChoBYwFYXBw"
        "XzGUjARob21llIwgZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGSUigYAaOXPiwGKBgZn5c+LAUsDSyp9"
        "lIwHY291bnRyeZSMAlVTlHOMBWRlbF8xlIwEZmlsbJRoBowOV2F0ZXJmYWxsRW50cnmUk5QpgZRdlCiMBW5ldF9h"
        "lE3cBU0gA2ViaBQpgZRdlCiMBW5ldF9ilE2EA00gA2VihpSKBmBS5s+LAUpAdxsATTB1SuCTBABLAksRZWJoBowF"
        "RXZlbnSUk5QpgZRdlCiMAmUxlGgLaAWMCmltcHJlc3Npb26Uigboa+XPiwGKBuhr5c+LAYoG/Gvlz4sBaBdNxAmM"
        "A1VTRJR9lCiMAWGUSwGMAWKUjAF4lHVLAUsFQwNyYXeUZWJoHSmBlF2UKIwCZTKUaAtoBYwGY2xvc2VklIoG0G/l"
        "z4sBigbQb+XPiwGKBuRv5c+LAU5OTn2UTk5OZWKGlGViLg=="
    ),
    "outputs": (
        "gASVswIAAAAAAACMFW1lZGlhdGlvbi5ydWxlcy5tb2RlbJSMEUNsb3NlZE9wcG9ydHVuaXR5lJOUKYGUXZQoaACM"
        "C09wcG9ydHVuaXR5lJOUKYGUXZQojBowMUpEMDAwMDAwMDAwMDAwMDAwMDAwMDAwMZSMBWFwcF8xlIwEaG9tZZSM"
        "IGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRklIoGAGjlz4sBigYGZ+XPiwFLA0sqfZSMB2NvdW50cnmU"
        "jAJVU5RzjAVkZWxfMZSMBGZpbGyUaACMDldhdGVyZmFsbEVudHJ5lJOUKYGUXZQojAVuZXRfYZRN3AVNIANlYmgT"
        "KYGUXZQojAVuZXRfYpRNhANNIANlYoaUigZgUubPiwFKQHcbAE0wdUrgkwQASwJLEWViaACMC1N0b3JlZEV2ZW50"
        "lJOUKYGUXZQoaACMBUV2ZW50lJOUKYGUXZQojAJlMZRoCmgJjAppbXByZXNzaW9ulIoG6Gvlz4sBigboa+XPiwGK"
        "Bvxr5c+LAWgWTcQJjANVU0SUfZQojAFhlEsBjAFilIwBeJR1SwFLBUMDcmF3lGViiU5lYmgcKYGUXZQoaCApgZRd"
        "lCiMAmUylGgKaAmMBmNsb3NlZJSKBtBv5c+LAYoG0G/lz4sBigbkb+XPiwFOTk59lE5OTmViiU5lYoaUaACMDUFy"
        "Y2hpdmVSZWNvcmSUk5QpgZRdlChoCWgKaAuKBgBo5c+LAYoGAOXlz4sBjAxjbG9zZWRfZXZlbnSUjAlpbXByZXNz"
        "ZWSUiWgWTcQJaCV9lChoJEsBaDBLAXVLAksASwOMAnIxlIxAOGEyZjQwODA1MTc1ZTEwNDJlYWRiOTNkMDQ5NzIx"
        "ZmM5MTEyNDVjNWZhN2VlNjg0ZmE3ZTQwMTk5MGU0MGMzMJRlYmVihZQu"
    ),
    "archived_state": (
        "gASVhwAAAAAAAACMFW1lZGlhdGlvbi5ydWxlcy5zdGF0ZZSMCEFyY2hpdmVklJOUKYGUXZQojBowMUpEMDAwMDAw"
        "MDAwMDAwMDAwMDAwMDAwMZSKBoj45c+LAYwFYXBwXzGUfZQoaAaMAmUxlIaUQwjWg+c7M6K7gZRoBowCZTKUhpRD"
        "CIRwvc57ijGBlHVlYi4="
    ),
}
