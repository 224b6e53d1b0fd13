{
  "targets": [
    {
      "target_name": "kiln_ecdsa",
      "sources": ["ecdsa.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "kiln_walbuf",
      "sources": ["walbuf.c"],
      "include_dirs": ["../node_modules/better-sqlite3/deps/sqlite3"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
