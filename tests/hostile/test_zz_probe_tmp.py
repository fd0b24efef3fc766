async def test_probe(hostile_outcome):
    out = hostile_outcome
    seen = {(x.source_topic, x.source_partition, x.source_offset) for x in out.letters}
    for name, case in out.cases.items():
        if case.expect and name in out.positions and out.positions[name] not in seen:
            print("MISSING", name, case.round, case.topic, out.positions[name])
    print("TIMED", out.timed_out)
    for k, v in out.logs.items():
        for line in v.splitlines():
            if "CRITICAL" in line or "ERROR" in line and "reconcil" not in line:
                print(k, line[:200])
