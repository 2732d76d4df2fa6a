"""Salesforce emulator: sObject schema (standard objects, field metadata,
describe output) and record IDs.  Used by salesforce.py."""
import re

# ---------------------------------------------------------------------------
# IDs
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CK = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_RE = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-5]{3})?$")


_UPPER_BITS = str.maketrans({c: ("1" if "A" <= c <= "Z" else "0") for c in B62})


def id_suffix(id15):
    bits = id15.translate(_UPPER_BITS)
    return CK[int(bits[4::-1], 2)] + CK[int(bits[9:4:-1], 2)] + CK[int(bits[14:9:-1], 2)]


def to18(s):
    """15- or 18-char ID -> canonical 18-char ID, or None when malformed.
    18-char IDs are case-insensitive: the case of the first 15 characters is
    restored from the checksum."""
    if not isinstance(s, str) or not _ID_RE.match(s):
        return None
    if len(s) == 15:
        return s + id_suffix(s)
    suffix = s[15:].upper()
    chars = list(s[:15])
    for k in range(3):
        bits = CK.index(suffix[k])
        for j in range(5):
            c = chars[k * 5 + j]
            if bits & (1 << j):
                if not c.isalpha():
                    return None
                chars[k * 5 + j] = c.upper()
            else:
                chars[k * 5 + j] = c.lower()
    id15 = "".join(chars)
    return id15 + suffix


def b62(n, width):
    out = []
    while n:
        n, r = divmod(n, 62)
        out.append(B62[r])
    s = "".join(reversed(out))
    return "0" * (width - len(s)) + s


def make_id(prefix, pod, n):
    id15 = prefix + pod + b62(n, 15 - len(prefix) - len(pod))
    return id15 + id_suffix(id15)


# ---------------------------------------------------------------------------
# Field metadata

SOAP = {"id": "tns:ID", "reference": "tns:ID", "string": "xsd:string",
        "textarea": "xsd:string", "picklist": "xsd:string", "multipicklist": "xsd:string",
        "email": "xsd:string", "phone": "xsd:string", "url": "xsd:string",
        "combobox": "xsd:string", "encryptedstring": "xsd:string",
        "boolean": "xsd:boolean", "int": "xsd:int", "double": "xsd:double",
        "currency": "xsd:double", "percent": "xsd:double", "date": "xsd:date",
        "datetime": "xsd:dateTime", "time": "xsd:time", "address": "urn:address",
        "long": "xsd:long"}
DEFAULT_LENGTH = {"id": 18, "reference": 18, "string": 255, "textarea": 255,
                  "picklist": 255, "multipicklist": 4099, "email": 80, "phone": 40,
                  "url": 255, "combobox": 255, "encryptedstring": 175}
STRINGISH = {"string", "textarea", "picklist", "multipicklist", "email", "phone", "url",
             "combobox", "encryptedstring"}
NUMERIC = {"int", "double", "currency", "percent", "long"}

SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate",
                 "LastModifiedById", "SystemModstamp")


class Field:
    __slots__ = ("name", "label", "type", "length", "nillable", "createable", "updateable",
                 "custom", "calculated", "externalId", "idLookup", "unique", "filterable",
                 "sortable", "groupable", "referenceTo", "relationshipName", "picklist",
                 "precision", "scale", "digits", "defaultValue", "defaultedOnCreate",
                 "nameField", "caseSensitive", "restrictedPicklist", "autoNumber",
                 "compound", "namePointing", "required", "lname", "check", "is_ref",
                 "childRelationshipName")

    def __init__(self, name, ftype, label=None, length=None, nillable=True, createable=True,
                 updateable=True, custom=None, calculated=False, externalId=False,
                 idLookup=False, unique=False, referenceTo=(), relationshipName=None,
                 picklist=(), precision=None, scale=None, digits=None, defaultValue=None,
                 defaultedOnCreate=False, nameField=False, caseSensitive=False,
                 restrictedPicklist=False, autoNumber=False, compound=None, filterable=True,
                 sortable=None, groupable=None, namePointing=False, childRelationshipName=None):
        self.name = name
        self.lname = name.lower()
        self.type = ftype
        self.label = label or _label(name)
        self.length = DEFAULT_LENGTH.get(ftype, 0) if length is None else length
        self.nillable = nillable
        self.createable = createable
        self.updateable = updateable
        self.custom = name.endswith("__c") if custom is None else custom
        self.calculated = calculated
        self.externalId = externalId
        self.idLookup = idLookup or externalId or ftype == "id"
        self.unique = unique
        self.referenceTo = list(referenceTo)
        self.relationshipName = relationshipName
        self.picklist = list(picklist)
        if ftype in ("double", "currency", "percent"):
            self.precision = 18 if precision is None else precision
            self.scale = (2 if ftype == "currency" else 0) if scale is None else scale
        else:
            self.precision = precision or 0
            self.scale = scale or 0
        self.digits = (9 if ftype == "int" else 0) if digits is None else digits
        self.defaultValue = defaultValue
        self.defaultedOnCreate = defaultedOnCreate
        self.nameField = nameField
        self.caseSensitive = caseSensitive
        self.restrictedPicklist = restrictedPicklist
        self.autoNumber = autoNumber
        self.compound = compound        # list of component field names (address/Name)
        self.filterable = filterable and ftype not in ("address",) and not (
            ftype == "textarea" and self.length > 255)
        self.sortable = self.filterable if sortable is None else sortable
        self.groupable = (ftype not in ("datetime", "double", "currency", "percent", "textarea",
                                        "address", "multipicklist")) if groupable is None else groupable
        self.namePointing = namePointing
        self.childRelationshipName = childRelationshipName    # on the referenced object
        # required on create: not nillable, createable, no default
        self.required = (not nillable) and createable and not defaultedOnCreate and ftype != "boolean"
        self.check = None
        self.is_ref = ftype == "reference"

    def describe(self):
        byte_len = self.length * 3 if self.type in STRINGISH else self.length
        return {
            "length": self.length, "name": self.name, "type": self.type,
            "defaultValue": self.defaultValue, "label": self.label,
            "updateable": self.updateable, "calculated": self.calculated,
            "controllerName": None, "nillable": self.nillable, "unique": self.unique,
            "precision": self.precision, "scale": self.scale,
            "caseSensitive": self.caseSensitive, "byteLength": byte_len,
            "inlineHelpText": None, "nameField": self.nameField,
            "externalId": self.externalId, "idLookup": self.idLookup,
            "filterable": self.filterable, "soapType": SOAP.get(self.type, "xsd:string"),
            "createable": self.createable, "deprecatedAndHidden": False,
            "autoNumber": self.autoNumber, "calculatedFormula": None,
            "defaultValueFormula": None, "defaultedOnCreate": self.defaultedOnCreate,
            "digits": self.digits, "groupable": self.groupable,
            "picklistValues": [
                {"value": v, "active": True, "label": v,
                 "defaultValue": (v == self.defaultValue), "validFor": None}
                for v in self.picklist],
            "referenceTo": list(self.referenceTo),
            "relationshipName": self.relationshipName, "relationshipOrder": None,
            "restrictedPicklist": self.restrictedPicklist, "namePointing": self.namePointing,
            "custom": self.custom, "htmlFormatted": False,
            "dependentPicklist": False, "writeRequiresMasterRead": False,
            "sortable": self.sortable,
        }


def _label(name):
    n = name[:-3] if name.endswith("__c") else name
    if n.endswith("Id") and len(n) > 2:
        n = n[:-2] + " ID"
    n = n.replace("_", " ")
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", n)


class SObject:
    def __init__(self, name, prefix, label=None, plural=None, custom=None):
        self.name = name
        self.prefix = prefix
        self.label = label or name.replace("__c", "").replace("_", " ")
        self.plural = plural or (self.label + "s")
        self.custom = name.endswith("__c") if custom is None else custom
        self.fields = {}            # canonical name -> Field (ordered)
        self.by_lower = {}          # lower name -> Field
        self.rel_lower = {}         # lower relationshipName -> Field
        self.children = []          # (child object name, field, relationshipName)
        self.replicateable = True
        self.id_head = None

    def add(self, f):
        self.fields[f.name] = f
        self.by_lower[f.lname] = f
        if f.relationshipName:
            self.rel_lower[f.relationshipName.lower()] = f
        return f

    def remove(self, name):
        f = self.field(name)
        if f is None:
            raise KeyError(name)
        del self.fields[f.name]
        del self.by_lower[f.lname]
        if f.relationshipName:
            self.rel_lower.pop(f.relationshipName.lower(), None)
        return f

    def field(self, name):
        return self.fields.get(name) or self.by_lower.get(name.lower())

    def urls(self, ver):
        base = "/services/data/v%s/sobjects/%s" % (ver, self.name)
        return {"sobject": base, "describe": base + "/describe", "rowTemplate": base + "/{ID}"}

    def global_entry(self, ver):
        return {
            "name": self.name, "label": self.label, "custom": self.custom,
            "keyPrefix": self.prefix, "labelPlural": self.plural, "layoutable": True,
            "activateable": False, "updateable": self.name != "User" or True,
            "urls": self.urls(ver), "searchable": True, "createable": self.name != "User",
            "customSetting": False, "deletable": self.name != "User",
            "deprecatedAndHidden": False, "feedEnabled": not self.custom, "mergeable":
            self.name in ("Account", "Contact", "Lead"), "queryable": True,
            "replicateable": self.replicateable, "retrieveable": True,
            "undeletable": self.name != "User", "triggerable": True,
        }

    def describe(self, ver, base_ui):
        d = self.global_entry(ver)
        urls = self.urls(ver)
        urls.update({"uiEditTemplate": base_ui + "/{ID}/e", "uiDetailTemplate": base_ui + "/{ID}",
                     "uiNewRecord": base_ui + "/%s/e" % self.prefix})
        out = {
            "name": d["name"], "label": d["label"], "custom": d["custom"],
            "keyPrefix": d["keyPrefix"], "labelPlural": d["labelPlural"],
            "layoutable": True, "activateable": False, "updateable": d["updateable"],
            "urls": urls, "searchable": True,
            "childRelationships": [
                {"field": fld, "deprecatedAndHidden": False, "relationshipName": rel,
                 "cascadeDelete": False, "childSObject": child}
                for child, fld, rel in self.children],
            "createable": d["createable"], "customSetting": False,
            "deletable": d["deletable"], "deprecatedAndHidden": False,
            "feedEnabled": d["feedEnabled"], "listviewable": None, "lookupLayoutable": None,
            "mergeable": d["mergeable"], "queryable": True,
            "recordTypeInfos": [{"name": "Master", "available": True,
                                 "recordTypeId": "012000000000000AAA",
                                 "defaultRecordTypeMapping": True}],
            "replicateable": d["replicateable"], "retrieveable": True,
            "searchLayoutable": None, "undeletable": d["undeletable"], "triggerable": True,
            "fields": [f.describe() for f in self.fields.values()],
        }
        return out


def _address(prefix, street="Street"):
    p = prefix
    comps = [p + street, p + "City", p + "State", p + "PostalCode", p + "Country"]
    lab = (p + " ") if p else ""
    return [
        Field(p + street, "textarea", lab + "Street", 255),
        Field(p + "City", "string", lab + "City", 40),
        Field(p + "State", "string", lab + "State/Province", 80),
        Field(p + "PostalCode", "string", lab + "Zip/Postal Code", 20),
        Field(p + "Country", "string", lab + "Country", 80),
        Field(p + "Address", "address", lab + "Address" if p else "Address", 0,
              createable=False, updateable=False, compound=comps, filterable=False),
    ]


def system_fields(owner_to=("User",)):
    """(head, tail): Id/IsDeleted first, audit fields last.  owner_to: what
    OwnerId may point at (queue-ownable objects: Group and User)."""
    head = [Field("Id", "id", "Record ID", nillable=False, createable=False, updateable=False,
                  defaultedOnCreate=True, idLookup=True),
            Field("IsDeleted", "boolean", "Deleted", nillable=False, createable=False,
                  updateable=False, defaultedOnCreate=True, defaultValue=None)]
    tail = [
        Field("OwnerId", "reference", "Owner ID", nillable=False, defaultedOnCreate=True,
              referenceTo=list(owner_to), relationshipName="Owner", namePointing=True),
        Field("CreatedDate", "datetime", "Created Date", nillable=False, createable=False,
              updateable=False, defaultedOnCreate=True),
        Field("CreatedById", "reference", "Created By ID", nillable=False, createable=False,
              updateable=False, defaultedOnCreate=True, referenceTo=["User"],
              relationshipName="CreatedBy"),
        Field("LastModifiedDate", "datetime", "Last Modified Date", nillable=False,
              createable=False, updateable=False, defaultedOnCreate=True),
        Field("LastModifiedById", "reference", "Last Modified By ID", nillable=False,
              createable=False, updateable=False, defaultedOnCreate=True,
              referenceTo=["User"], relationshipName="LastModifiedBy"),
        Field("SystemModstamp", "datetime", "System Modstamp", nillable=False,
              createable=False, updateable=False, defaultedOnCreate=True),
    ]
    return head, tail


INDUSTRIES = ["Agriculture", "Apparel", "Banking", "Biotechnology", "Chemicals",
              "Communications", "Construction", "Consulting", "Education", "Electronics",
              "Energy", "Engineering", "Entertainment", "Environmental", "Finance",
              "Food & Beverage", "Government", "Healthcare", "Hospitality", "Insurance",
              "Machinery", "Manufacturing", "Media", "Not For Profit", "Recreation",
              "Retail", "Shipping", "Technology", "Telecommunications", "Transportation",
              "Utilities", "Other"]
LEAD_SOURCES = ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"]
RATINGS = ["Hot", "Warm", "Cold"]
SALUTATIONS = ["Mr.", "Ms.", "Mrs.", "Dr.", "Prof.", "Mx."]
STAGES = ["Prospecting", "Qualification", "Needs Analysis", "Value Proposition",
          "Id. Decision Makers", "Perception Analysis", "Proposal/Price Quote",
          "Negotiation/Review", "Closed Won", "Closed Lost"]
LEAD_STATUS = ["Open - Not Contacted", "Working - Contacted", "Closed - Converted",
               "Closed - Not Converted"]


def standard_objects():
    objs = {}

    def build(name, prefix, body, plural=None):
        o = SObject(name, prefix, plural=plural)
        head, tail = system_fields(("Group", "User") if name == "Lead" else ("User",))
        for f in head + body + tail:
            o.add(f)
        objs[name] = o
        return o

    master = lambda obj: Field("MasterRecordId", "reference", "Master Record ID",  # noqa: E731
                               createable=False, updateable=False, referenceTo=[obj],
                               relationshipName="MasterRecord")
    build("Account", "001", [
        master("Account"),
        Field("Name", "string", "Account Name", 255, nillable=False, nameField=True,
              idLookup=True),
        Field("Type", "picklist", "Account Type", picklist=[
            "Prospect", "Customer - Direct", "Customer - Channel", "Channel Partner / Reseller",
            "Installation Partner", "Technology Partner", "Other"]),
        Field("ParentId", "reference", "Parent Account ID", referenceTo=["Account"],
              relationshipName="Parent"),
    ] + _address("Billing") + _address("Shipping") + [
        Field("Phone", "phone", "Account Phone"),
        Field("Fax", "phone", "Account Fax"),
        Field("AccountNumber", "string", "Account Number", 40),
        Field("Website", "url", "Website"),
        Field("Sic", "string", "SIC Code", 20),
        Field("Industry", "picklist", "Industry", picklist=INDUSTRIES),
        Field("AnnualRevenue", "currency", "Annual Revenue", precision=18, scale=0),
        Field("NumberOfEmployees", "int", "Employees", digits=8),
        Field("Ownership", "picklist", "Ownership", picklist=["Public", "Private", "Subsidiary", "Other"]),
        Field("Description", "textarea", "Account Description", 32000),
        Field("Rating", "picklist", "Account Rating", picklist=RATINGS),
        Field("LastActivityDate", "date", "Last Activity", createable=False, updateable=False),
    ], plural="Accounts")
    build("Contact", "003", [
        master("Contact"),
        Field("AccountId", "reference", "Account ID", referenceTo=["Account"],
              relationshipName="Account"),
        Field("LastName", "string", "Last Name", 80, nillable=False),
        Field("FirstName", "string", "First Name", 40),
        Field("Salutation", "picklist", "Salutation", 40, picklist=SALUTATIONS),
        Field("Name", "string", "Full Name", 121, createable=False, updateable=False,
              nameField=True, compound=["FirstName", "LastName"]),
    ] + _address("Other") + _address("Mailing") + [
        Field("Phone", "phone", "Business Phone"),
        Field("Fax", "phone", "Business Fax"),
        Field("MobilePhone", "phone", "Mobile Phone"),
        Field("HomePhone", "phone", "Home Phone"),
        Field("ReportsToId", "reference", "Reports To ID", referenceTo=["Contact"],
              relationshipName="ReportsTo"),
        Field("Email", "email", "Email", idLookup=True),
        Field("Title", "string", "Title", 128),
        Field("Department", "string", "Department", 80),
        Field("LeadSource", "picklist", "Lead Source", picklist=LEAD_SOURCES),
        Field("Birthdate", "date", "Birthdate"),
        Field("Description", "textarea", "Contact Description", 32000),
        Field("HasOptedOutOfEmail", "boolean", "Email Opt Out", nillable=False,
              defaultedOnCreate=True, defaultValue=False),
        Field("DoNotCall", "boolean", "Do Not Call", nillable=False, defaultedOnCreate=True,
              defaultValue=False),
        Field("LastActivityDate", "date", "Last Activity", createable=False, updateable=False),
        Field("Sync_Key__c", "string", "Sync Key", 255, externalId=True, unique=True,
              custom=True),
    ], plural="Contacts")
    build("Lead", "00Q", [
        master("Lead"),
        Field("LastName", "string", "Last Name", 80, nillable=False),
        Field("FirstName", "string", "First Name", 40),
        Field("Salutation", "picklist", "Salutation", 40, picklist=SALUTATIONS),
        Field("Name", "string", "Full Name", 121, createable=False, updateable=False,
              nameField=True, compound=["FirstName", "LastName"]),
        Field("Title", "string", "Title", 128),
        Field("Company", "string", "Company", 255, nillable=False),
    ] + _address("", "Street") + [
        Field("Phone", "phone", "Phone"),
        Field("MobilePhone", "phone", "Mobile Phone"),
        Field("Email", "email", "Email", idLookup=True),
        Field("Website", "url", "Website"),
        Field("Description", "textarea", "Description", 32000),
        Field("LeadSource", "picklist", "Lead Source", picklist=LEAD_SOURCES),
        Field("Status", "picklist", "Status", nillable=False, defaultedOnCreate=True,
              defaultValue="Open - Not Contacted", picklist=LEAD_STATUS),
        Field("Industry", "picklist", "Industry", picklist=INDUSTRIES),
        Field("Rating", "picklist", "Rating", picklist=RATINGS),
        Field("AnnualRevenue", "currency", "Annual Revenue", precision=18, scale=0),
        Field("NumberOfEmployees", "int", "Employees", digits=8),
        Field("HasOptedOutOfEmail", "boolean", "Email Opt Out", nillable=False,
              defaultedOnCreate=True, defaultValue=False),
        Field("IsConverted", "boolean", "Converted", nillable=False, defaultedOnCreate=True,
              defaultValue=False, updateable=False),
        Field("ConvertedDate", "date", "Converted Date", createable=False, updateable=False),
        Field("ConvertedAccountId", "reference", "Converted Account ID", createable=False,
              updateable=False, referenceTo=["Account"], relationshipName="ConvertedAccount"),
        Field("ConvertedContactId", "reference", "Converted Contact ID", createable=False,
              updateable=False, referenceTo=["Contact"], relationshipName="ConvertedContact"),
        Field("ConvertedOpportunityId", "reference", "Converted Opportunity ID",
              createable=False, updateable=False, referenceTo=["Opportunity"],
              relationshipName="ConvertedOpportunity"),
        Field("IsUnreadByOwner", "boolean", "Unread By Owner", nillable=False,
              defaultedOnCreate=True, defaultValue=False),
    ], plural="Leads")
    build("Opportunity", "006", [
        Field("AccountId", "reference", "Account ID", referenceTo=["Account"],
              relationshipName="Account"),
        Field("Name", "string", "Name", 120, nillable=False, nameField=True),
        Field("Description", "textarea", "Description", 32000),
        Field("StageName", "picklist", "Stage", nillable=False, picklist=STAGES),
        Field("Amount", "currency", "Amount", precision=18, scale=2),
        Field("Probability", "percent", "Probability (%)", precision=3, scale=0),
        Field("ExpectedRevenue", "currency", "Expected Amount", createable=False,
              updateable=False, calculated=True, precision=18, scale=2),
        Field("TotalOpportunityQuantity", "double", "Quantity", precision=18, scale=2),
        Field("CloseDate", "date", "Close Date", nillable=False),
        Field("Type", "picklist", "Opportunity Type", picklist=[
            "Existing Customer - Upgrade", "Existing Customer - Replacement",
            "Existing Customer - Downgrade", "New Customer"]),
        Field("NextStep", "string", "Next Step", 255),
        Field("LeadSource", "picklist", "Lead Source", picklist=LEAD_SOURCES),
        Field("IsClosed", "boolean", "Closed", nillable=False, createable=False,
              updateable=False, defaultedOnCreate=True, defaultValue=False),
        Field("IsWon", "boolean", "Won", nillable=False, createable=False, updateable=False,
              defaultedOnCreate=True, defaultValue=False),
        Field("ForecastCategoryName", "picklist", "Forecast Category", picklist=[
            "Omitted", "Pipeline", "Best Case", "Commit", "Closed"]),
        Field("ContactId", "reference", "Contact ID", referenceTo=["Contact"],
              relationshipName="Contact"),
    ], plural="Opportunities")
    # User: read-only here; holds the integration user and a "remote" user
    u = SObject("User", "005", plural="Users")
    for f in [Field("Id", "id", "User ID", nillable=False, createable=False, updateable=False,
                    defaultedOnCreate=True),
              Field("Username", "string", "Username", 80, nillable=False, unique=True,
                    idLookup=True),
              Field("LastName", "string", "Last Name", 80, nillable=False),
              Field("FirstName", "string", "First Name", 40),
              Field("Name", "string", "Full Name", 121, createable=False, updateable=False,
                    nameField=True, compound=["FirstName", "LastName"]),
              Field("Email", "email", "Email", nillable=False),
              Field("IsActive", "boolean", "Active", nillable=False, defaultedOnCreate=True,
                    defaultValue=True),
              Field("CreatedDate", "datetime", "Created Date", nillable=False,
                    createable=False, updateable=False, defaultedOnCreate=True),
              Field("LastModifiedDate", "datetime", "Last Modified Date", nillable=False,
                    createable=False, updateable=False, defaultedOnCreate=True),
              Field("SystemModstamp", "datetime", "System Modstamp", nillable=False,
                    createable=False, updateable=False, defaultedOnCreate=True)]:
        u.add(f)
    u.replicateable = False
    objs["User"] = u
    link_children(objs)
    return objs


def link_children(objs):
    for o in objs.values():
        o.children = []
    child_rel = {("Contact", "AccountId"): "Contacts", ("Opportunity", "AccountId"): "Opportunities",
                 ("Account", "ParentId"): "ChildAccounts", ("Contact", "ReportsToId"): None}
    for o in objs.values():
        for f in o.fields.values():
            if f.type == "reference" and f.createable and f.name not in ("OwnerId",):
                for target in f.referenceTo:
                    t = objs.get(target)
                    if t is None:
                        continue
                    rel = f.childRelationshipName or child_rel.get((o.name, f.name))
                    if rel is None and f.name.endswith("__c"):
                        rel = o.name.replace("__c", "") + "s__r"
                    t.children.append((o.name, f.name, rel))


def custom_field(spec):
    """A Field from a seed/control definition: {name, type, label?, length?,
    required?, externalId?, unique?, referenceTo?, relationshipName?,
    childRelationshipName?, picklistValues?, precision?, scale?, createable?,
    updateable?, defaultValue?, restrictedPicklist?}."""
    name = spec["name"]
    ftype = spec.get("type", "string")
    if ftype not in SOAP or ftype in ("id", "address"):
        raise ValueError("unsupported field type %r" % ftype)
    ref = spec.get("referenceTo") or []
    if isinstance(ref, str):
        ref = [ref]
    rel = spec.get("relationshipName")
    if ftype == "reference" and not rel:
        rel = name[:-3] + "__r" if name.endswith("__c") else (name[:-2] if name.endswith("Id") else name)
    pick = spec.get("picklistValues") or []
    pick = [p["value"] if isinstance(p, dict) else p for p in pick]
    return Field(name, ftype, spec.get("label"), spec.get("length"),
                 nillable=not spec.get("required", False),
                 createable=spec.get("createable", True), updateable=spec.get("updateable", True),
                 custom=spec.get("custom"), externalId=spec.get("externalId", False),
                 unique=spec.get("unique", False), referenceTo=ref, relationshipName=rel,
                 picklist=pick, precision=spec.get("precision"), scale=spec.get("scale"),
                 defaultValue=spec.get("defaultValue"),
                 defaultedOnCreate=spec.get("defaultValue") is not None or ftype == "boolean",
                 restrictedPicklist=spec.get("restrictedPicklist", False),
                 caseSensitive=spec.get("caseSensitive", False),
                 childRelationshipName=spec.get("childRelationshipName"))


def custom_object(name, spec):
    prefix = spec.get("keyPrefix")
    if not prefix or len(prefix) != 3:
        raise ValueError("custom object %s needs a 3-character keyPrefix" % name)
    o = SObject(name, prefix, spec.get("label"), spec.get("labelPlural"), custom=True)
    head, tail = system_fields(("Group", "User"))
    for f in head:
        o.add(f)
    o.add(Field("Name", "string", spec.get("nameLabel", o.label + " Name"), 80,
                nillable=not spec.get("nameRequired", False), nameField=True, idLookup=True,
                custom=False))
    for fs in spec.get("fields", []):
        o.add(custom_field(fs))
    for f in tail:
        o.add(f)
    return o
