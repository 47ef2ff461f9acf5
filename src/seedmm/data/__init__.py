"""Data: shapes-world records, webdataset shards, (later) code shards and sequence builders."""
