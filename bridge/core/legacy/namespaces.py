"""The XML namespaces the bridge reads and writes (KITH BKM, MsgHead, AppRec; W3C XSD)."""

BKM_NS = "http://www.kith.no/xmlstds/bkm/2006-12-20"


MSGHEAD_NS = "http://www.kith.no/xmlstds/msghead/2006-05-24"


APPREC_NS = "http://www.kith.no/xmlstds/apprec/2004-11-21"


XSD_NS = "http://www.w3.org/2001/XMLSchema"


XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
