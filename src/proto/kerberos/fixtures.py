"""Prints the Kerberos fixtures of mod.rs's tests as hex, encoded by impacket's krb5.asn1
classes (RFC 4120 ASN.1). Run: python3 src/proto/kerberos/fixtures.py"""
from pyasn1.codec.der import encoder
from pyasn1.type.univ import noValue
from impacket.krb5.asn1 import (TGS_REQ, AS_REQ, AS_REP, TGS_REP, KRB_ERROR, seq_set,
                                seq_set_iter, KDC_REQ_BODY, PrincipalName)
from impacket.krb5 import constants
from impacket.krb5.types import Principal

REALM = "CORP.EXAMPLE"
SPN = "MSSQLSvc/sql01.corp.example:1433"


def opts(*flags):
    bits = [0] * 32
    for f in flags:
        bits[f.value] = 1
    return "".join(map(str, bits))


def principal(obj, field, name, ntype):
    seq_set(obj, field, Principal(name, type=ntype.value).components_to_asn1)


def kdc_req(cls, msg_type, with_cname, sname, ntype, flags):
    r = cls()
    r["pvno"] = 5
    r["msg-type"] = msg_type.value
    body = seq_set(r, "req-body")
    body["kdc-options"] = opts(*flags)
    if with_cname:
        principal(body, "cname", "alice", constants.PrincipalNameType.NT_PRINCIPAL)
    body["realm"] = REALM
    principal(body, "sname", sname, ntype)
    body["till"] = "20370913024805Z"
    body["nonce"] = 12345678
    seq_set_iter(body, "etype", (18, 17, 23))
    return encoder.encode(r)


def kdc_rep(cls, msg_type, sname):
    r = cls()
    r["pvno"] = 5
    r["msg-type"] = msg_type.value
    r["crealm"] = REALM
    principal(r, "cname", "alice", constants.PrincipalNameType.NT_PRINCIPAL)
    t = r["ticket"]
    t["tkt-vno"] = 5
    t["realm"] = REALM
    principal(t, "sname", sname, constants.PrincipalNameType.NT_SRV_INST)
    t["enc-part"]["etype"] = 18
    t["enc-part"]["kvno"] = 2
    t["enc-part"]["cipher"] = b"\xaa" * 16
    r["enc-part"]["etype"] = 18
    r["enc-part"]["cipher"] = b"\xbb" * 16
    return encoder.encode(r)


def krb_error(code, sname):
    e = KRB_ERROR()
    e["pvno"] = 5
    e["msg-type"] = constants.ApplicationTagNumbers.KRB_ERROR.value
    e["stime"] = "20261124120000Z"
    e["susec"] = 42
    e["error-code"] = code
    e["realm"] = REALM
    principal(e, "sname", sname, constants.PrincipalNameType.NT_SRV_INST)
    return encoder.encode(e)


F = constants.KDCOptions
out = {
    "TGS_REQ": kdc_req(TGS_REQ, constants.ApplicationTagNumbers.TGS_REQ, False, SPN,
                       constants.PrincipalNameType.NT_SRV_INST,
                       (F.forwardable, F.renewable, F.canonicalize)),
    "TGS_REQ_NOT_FORWARDABLE": kdc_req(TGS_REQ, constants.ApplicationTagNumbers.TGS_REQ, False,
                                       SPN, constants.PrincipalNameType.NT_SRV_INST,
                                       (F.renewable, F.canonicalize)),
    "AS_REQ": kdc_req(AS_REQ, constants.ApplicationTagNumbers.AS_REQ, True, "krbtgt/" + REALM,
                      constants.PrincipalNameType.NT_SRV_INST, (F.forwardable,)),
    "AS_REP": kdc_rep(AS_REP, constants.ApplicationTagNumbers.AS_REP, "krbtgt/" + REALM),
    "TGS_REP": kdc_rep(TGS_REP, constants.ApplicationTagNumbers.TGS_REP, SPN),
    "KRB_ERROR_S_PRINCIPAL_UNKNOWN": krb_error(7, SPN),
}
for name, der in out.items():
    print(name, len(der), der.hex())
