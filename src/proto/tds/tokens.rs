//! Server token stream (MS-TDS 2.2.7): placeholder replaced below.
