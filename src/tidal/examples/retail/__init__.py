"""A retail click-through scenario: a *generated* stream of product impressions and clicks with
a change of behaviour at a known time, and the pipeline that retrains its model."""
