"""HTTP to Helfo: the KUHR Krav API client (`client`), tokens from Maskinporten and HelseID
(`auth`), JWE (`jwe`), the transport (`transport`), which KUHR the settings point at
(`target`) and Helfo's open data API (`opendata`).
"""

__all__ = [
    "auth",
    "client",
    "jwe",
    "opendata",
    "target",
    "transport",
]
