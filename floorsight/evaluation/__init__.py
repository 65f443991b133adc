"""``floorsight eval``: the public benchmarks (SKAB, NAB, C-MAPSS), each scored with its own
published protocol over what ``floorsight replay`` computes (the pipeline's engine)."""
