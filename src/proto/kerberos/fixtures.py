"""Prints the Kerberos fixtures of mod.rs's tests as hex, encoded by impacket's krb5.asn1
classes (RFC 4120 ASN.1). Run: python3 src/proto/kerberos/fixtures.py"""
from pyasn1.codec.der import encoder
from pyasn1.type.univ import noValue
from impacket.krb5.asn1 import (AP_REQ, TGS_REQ, AS_REQ, AS_REP, TGS_REP, KRB_ERROR, seq_set,
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


def tgs_req_with_ap_req():
    """A TGS-REQ as Windows sends it: PA-TGS-REQ (padata type 1) carrying an AP-REQ with the
    TGT (random ciphertext stands in for the encrypted parts)."""
    ap = AP_REQ()
    ap["pvno"] = 5
    ap["msg-type"] = constants.ApplicationTagNumbers.AP_REQ.value
    ap["ap-options"] = opts()
    t = ap["ticket"]
    t["tkt-vno"] = 5
    t["realm"] = REALM
    principal(t, "sname", "krbtgt/" + REALM, constants.PrincipalNameType.NT_SRV_INST)
    t["enc-part"]["etype"] = 18
    t["enc-part"]["kvno"] = 2
    t["enc-part"]["cipher"] = b"\xcc" * 32
    ap["authenticator"]["etype"] = 18
    ap["authenticator"]["cipher"] = b"\xdd" * 32
    r = TGS_REQ()
    r["pvno"] = 5
    r["msg-type"] = constants.ApplicationTagNumbers.TGS_REQ.value
    r["padata"] = noValue
    r["padata"][0] = noValue
    r["padata"][0]["padata-type"] = constants.PreAuthenticationDataTypes.PA_TGS_REQ.value
    r["padata"][0]["padata-value"] = encoder.encode(ap)
    body = seq_set(r, "req-body")
    F = constants.KDCOptions
    body["kdc-options"] = opts(F.forwardable, F.renewable, F.canonicalize)
    body["realm"] = REALM
    principal(body, "sname", SPN, constants.PrincipalNameType.NT_SRV_INST)
    body["till"] = "20370913024805Z"
    body["nonce"] = 87654321
    seq_set_iter(body, "etype", (18, 23))
    return encoder.encode(r), encoder.encode(ap)


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
    "TGS_REQ_WITH_PADATA": tgs_req_with_ap_req()[0],
    "AP_REQ": tgs_req_with_ap_req()[1],
}
for name, der in out.items():
    print(name, len(der), der.hex())
