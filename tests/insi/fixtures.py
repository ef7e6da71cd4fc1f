"""INSi answers written after the shapes in ins.md §2.4–2.5 (captured answers and CNDA files).

Written here by hand: each one reproduces one variant the real service or the CNDA kit is
known to send (prefixes, history shapes, TIQ variants, codes, faults).
"""

from __future__ import annotations

SOAP = "http://www.w3.org/2003/05/soap-envelope"


def captured(resultat: str) -> bytes:
    """The envelope shape of the captured answers: ``soap:Envelope`` with an ``S:Body`` of its own."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<soap:Envelope xmlns:soap="{SOAP}"><S:Body xmlns:S="{SOAP}">{resultat}</S:Body></soap:Envelope>'
    ).encode()


_DEFAULT_NS = (
    '<RESULTAT xmlns:ns3="http://www.cnamts.fr/INSiRecVit" xmlns:ns2="http://www.cnamts.fr/INSiRecSans" '
    'xmlns="http://www.cnamts.fr/INSiResultat">'
)

# 00, default namespace, no history, Corsica 2A (qualification ADRTROIS DOMINIQUE).
FOUND_DEFAULT_NS = captured(
    _DEFAULT_NS + "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR>"
    "<INDIVIDU><INSACTIF><IdIndividu><NumIdentifiant>297022A020778</NumIdentifiant><Cle>78</Cle></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.8</OID></INSACTIF>"
    "<TIQ><NomNaissance>ADRTROIS</NomNaissance><ListePrenom>DOMINIQUE</ListePrenom><Sexe>F</Sexe>"
    "<DateNaissance>1997-02-26</DateNaissance><LieuNaissance>2A020</LieuNaissance></TIQ></INDIVIDU></RESULTAT>"
)

# 00 with everything prefixed ns2: (= INSiResultat) and an env: Body, as other captures show.
FOUND_PREFIXED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    f'<env:Envelope xmlns:env="{SOAP}"><env:Header/><env:Body>'
    '<ns2:RESULTAT xmlns:ns2="http://www.cnamts.fr/INSiResultat" xmlns="urn:something-else">'
    "<ns2:CR><ns2:CodeCR>00</ns2:CodeCR><ns2:LibelleCR>OK</ns2:LibelleCR></ns2:CR>"
    "<ns2:INDIVIDU><ns2:INSACTIF><ns2:IdIndividu><ns2:NumIdentifiant>2751263220749</ns2:NumIdentifiant>"
    "<ns2:Cle>74</ns2:Cle></ns2:IdIndividu><ns2:OID>1.2.250.1.213.1.4.8</ns2:OID></ns2:INSACTIF>"
    "<ns2:TIQ><ns2:NomNaissance>ADRUN</ns2:NomNaissance><ns2:ListePrenom>ZOE</ns2:ListePrenom>"
    "<ns2:Sexe>F</ns2:Sexe><ns2:DateNaissance>1975-12-31</ns2:DateNaissance>"
    "<ns2:LieuNaissance>63220</ns2:LieuNaissance></ns2:TIQ></ns2:INDIVIDU></ns2:RESULTAT>"
    "</env:Body></env:Envelope>"
).encode()

# 00 with two INSHISTO, dates before IdIndividu, DateDeb after DateFin (CNDA TEST_2.04 cas 2).
FOUND_HISTORY_TWO = captured(
    _DEFAULT_NS + "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU>"
    "<INSACTIF><IdIndividu><NumIdentifiant>1090763220834</NumIdentifiant><Cle>89</Cle></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.8</OID></INSACTIF>"
    "<INSHISTO><DateDeb>2019-03-01</DateDeb><DateFin>2019-02-28</DateFin>"
    "<IdIndividu><NumIdentifiant>2090763220834</NumIdentifiant><Cle>39</Cle></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.8</OID></INSHISTO>"
    "<INSHISTO><IdIndividu><NumIdentifiant>2090663220123</NumIdentifiant><Cle>55</Cle></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.8</OID></INSHISTO>"
    "<TIQ><NomNaissance>ECETINSI</NomNaissance><ListePrenom>PIERRE-ALAIN MURIEL FLORIANT</ListePrenom>"
    "<Sexe>M</Sexe><DateNaissance>2009-07-14</DateNaissance><LieuNaissance>63220</LieuNaissance></TIQ>"
    "</INDIVIDU></RESULTAT>"
)

# 00 with one INSHISTO (a NIA replaced by a NIR), TypeMatricule present, xsd:date with a zone.
FOUND_HISTORY_ONE = captured(
    _DEFAULT_NS + "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU>"
    "<INSACTIF><IdIndividu><NumIdentifiant>1100863220830</NumIdentifiant><Cle>60</Cle>"
    "<TypeMatricule>NIR</TypeMatricule></IdIndividu><OID>1.2.250.1.213.1.4.8</OID>"
    "<DateDeb>2012-01-01+01:00</DateDeb></INSACTIF>"
    "<INSHISTO><IdIndividu><NumIdentifiant>1090763220888</NumIdentifiant><Cle>35</Cle></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.9</OID><DateDeb>2010-08-20</DateDeb><DateFin>2011-12-31</DateFin></INSHISTO>"
    "<TIQ><NomNaissance>NESSI</NomNaissance><ListePrenom>MICHELANGELO ANTHONY</ListePrenom>"
    "<Sexe>M</Sexe><DateNaissance>2010-08-07</DateNaissance><LieuNaissance>63220</LieuNaissance></TIQ>"
    "</INDIVIDU></RESULTAT>"
)

# 00 whose INSHISTO repeats INSACTIF, with TIQ/Prenom, Corsica 2B, whitespace between elements (TEST_2.08 cas 1).
FOUND_HISTORY_REPEATS_ACTIVE = captured(
    _DEFAULT_NS
    + """
  <CR>
    <CodeCR>00</CodeCR>
    <LibelleCR>OK</LibelleCR>
  </CR>
  <INDIVIDU>
    <INSACTIF>
      <IdIndividu><NumIdentifiant>180032B020401</NumIdentifiant><Cle>23</Cle></IdIndividu>
      <OID>1.2.250.1.213.1.4.8</OID>
    </INSACTIF>
    <INSHISTO>
      <IdIndividu><NumIdentifiant>180032B020401</NumIdentifiant><Cle>23</Cle></IdIndividu>
      <OID>1.2.250.1.213.1.4.8</OID>
    </INSHISTO>
    <TIQ>
      <NomNaissance>CORSE</NomNaissance>
      <Prenom>ANTHONY</Prenom>
      <ListePrenom>ANTHONY</ListePrenom>
      <Sexe>M</Sexe>
      <DateNaissance>1980-03-02</DateNaissance>
      <LieuNaissance>2B020</LieuNaissance>
    </TIQ>
  </INDIVIDU>
</RESULTAT>"""
)

# 00 whose matricules carry wrong keys (TEST_2.08 cas 2: 60 and 10 where the algorithm gives 76 and 26).
FOUND_BAD_KEYS = captured(
    _DEFAULT_NS + "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU>"
    "<INSACTIF><IdIndividu><NumIdentifiant>1810363220456</NumIdentifiant><Cle>60</Cle></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.8</OID></INSACTIF>"
    "<INSHISTO><IdIndividu><NumIdentifiant>1810363220456</NumIdentifiant><Cle>60</Cle></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.8</OID></INSHISTO>"
    "<INSHISTO><IdIndividu><NumIdentifiant>2810363220456</NumIdentifiant><Cle>10</Cle></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.8</OID></INSHISTO>"
    "<TIQ><NomNaissance>HERMANN</NomNaissance><Prenom>GATIEN</Prenom><ListePrenom>GATIEN</ListePrenom>"
    "<Sexe>M</Sexe><DateNaissance>1981-03-24</DateNaissance><LieuNaissance>63220</LieuNaissance></TIQ>"
    "</INDIVIDU></RESULTAT>"
)

# 00 for a NIA with placeholder traits PROVISOIRE / MATRICULE (TEST_2.05), with a comment inside.
FOUND_NIA_PLACEHOLDER = captured(
    _DEFAULT_NS + "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU>"
    "<INSACTIF><IdIndividu><NumIdentifiant>1090763220888</NumIdentifiant><Cle>35</Cle></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.9</OID><!-- OID NIA --></INSACTIF>"
    "<TIQ><NomNaissance>PROVISOIRE</NomNaissance><Prenom>MATRICULE</Prenom><ListePrenom>MATRICULE</ListePrenom>"
    "<Sexe>M</Sexe><DateNaissance>2009-07-01</DateNaissance><LieuNaissance>63220</LieuNaissance></TIQ>"
    "</INDIVIDU></RESULTAT>"
)

# 00 with TIQ/Prenom and no ListePrenom, no LieuNaissance, no Cle (computed), lunar birth date.
FOUND_PRENOM_ONLY = captured(
    _DEFAULT_NS + "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU>"
    "<INSACTIF><IdIndividu><NumIdentifiant>1810163220751</NumIdentifiant></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.8</OID></INSACTIF>"
    "<TIQ><NomNaissance>ADRDEUX</NomNaissance><Prenom>LAURENT</Prenom><Sexe>M</Sexe>"
    "<DateNaissance>1981-02-30</DateNaissance></TIQ></INDIVIDU></RESULTAT>"
)

# 01 as in REP_CR01.xml.
NOT_FOUND = captured(
    _DEFAULT_NS + "<CR><CodeCR>01</CodeCR><LibelleCR>Aucune identite trouvee</LibelleCR></CR></RESULTAT>"
)

# 02: several identities, no INDIVIDU.
AMBIGUOUS = captured(
    _DEFAULT_NS + "<CR><CodeCR>02</CodeCR><LibelleCR>Plusieurs identites trouvees</LibelleCR></CR></RESULTAT>"
)

UNKNOWN_CODE = captured(_DEFAULT_NS + "<CR><CodeCR>03</CodeCR><LibelleCR>Nouveau cas</LibelleCR></CR></RESULTAT>")

FOUND_WITHOUT_INDIVIDU = captured(_DEFAULT_NS + "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR></RESULTAT>")

TIQ_WITHOUT_SEX = captured(
    _DEFAULT_NS + "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU>"
    "<INSACTIF><IdIndividu><NumIdentifiant>2751263220749</NumIdentifiant><Cle>74</Cle></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.8</OID></INSACTIF>"
    "<TIQ><NomNaissance>ADRUN</NomNaissance><ListePrenom>ZOE</ListePrenom>"
    "<DateNaissance>1975-12-31</DateNaissance></TIQ></INDIVIDU></RESULTAT>"
)

BAD_OID = captured(
    _DEFAULT_NS + "<CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR><INDIVIDU>"
    "<INSACTIF><IdIndividu><NumIdentifiant>2751263220749</NumIdentifiant><Cle>74</Cle></IdIndividu>"
    "<OID>1.2.250.1.213.1.4.13</OID></INSACTIF>"
    "<TIQ><NomNaissance>ADRUN</NomNaissance><ListePrenom>ZOE</ListePrenom><Sexe>F</Sexe>"
    "<DateNaissance>1975-12-31</DateNaissance></TIQ></INDIVIDU></RESULTAT>"
)

# RESULTAT elements without namespace: the same local names, but not INSi's.
WRONG_NAMESPACE = captured("<RESULTAT><CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR></RESULTAT>")

TRUNCATED = captured(_DEFAULT_NS + "<CR><CodeCR>00</CodeCR>")[:-40]

HOSTILE = (
    b'<?xml version="1.0"?><!DOCTYPE soap:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>'
    b'<RESULTAT xmlns="http://www.cnamts.fr/INSiResultat"><CR><CodeCR>&xxe;</CodeCR></CR></RESULTAT>'
    b"</soap:Body></soap:Envelope>"
)

# --- Faults (HTTP 500) -------------------------------------------------------------------------

# siram_100 / desir_550: unknown IDAM (padoa fixture shape: soap: and env: prefixes for one namespace).
FAULT_UNKNOWN_IDAM = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    f'<soap:Envelope xmlns:soap="{SOAP}"><env:Body xmlns:env="{SOAP}"><soap:Fault><soap:Code>'
    "<soap:Value>soap:Sender</soap:Value><soap:Subcode><soap:Value>soap:siram_100</soap:Value></soap:Subcode>"
    "</soap:Code><soap:Reason><soap:Text xml:lang=\"fr\">L'accès par ce progiciel au service n'est pas autorisé. "
    "Contactez l'éditeur du progiciel ou votre responsable informatique.</soap:Text></soap:Reason>"
    '<soap:Detail><siram:Erreur code="desir_550" messageID="uuid:b3549edd-4ae9-472a-b26f-fd2fb4ef397f" '
    'severite="erreur" xmlns:siram="urn:siram">Numéro d\'autorisation du logiciel inconnu.</siram:Erreur>'
    "</soap:Detail></soap:Fault></env:Body></soap:Envelope>"
).encode()

# siram_40 / insi_102: technical error, severity spelt "fatal", reason in English-tagged French, S: prefix.
FAULT_TECHNICAL = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    f'<soap:Envelope xmlns:soap="{SOAP}"><env:Body xmlns:S="{SOAP}" xmlns:env="{SOAP}">'
    '<S:Fault xmlns:ns4="http://schemas.xmlsoap.org/soap/envelope/"><S:Code><S:Value>S:Receiver</S:Value>'
    "<S:Subcode><S:Value>S:siram_40</S:Value></S:Subcode></S:Code><S:Reason>"
    '<S:Text xml:lang="en">Le service est temporairement inaccessible. Veuillez renouveler votre demande '
    "ultérieurement.</S:Text></S:Reason><S:Detail>"
    '<siram:Erreur severite="fatal" code="insi_102" xmlns:siram="urn:siram">L\'appel au service de recherche '
    "avec les traits d'identité renvoie une erreur technique.</siram:Erreur></S:Detail></S:Fault>"
    "</env:Body></soap:Envelope>"
).encode()

# insi_111 with the XSD spelling "fatale" and an unbound subcode prefix.
FAULT_UNAVAILABLE = (
    f'<env:Envelope xmlns:env="{SOAP}"><env:Body><env:Fault><env:Code><env:Value>env:Receiver</env:Value>'
    "<env:Subcode><env:Value>siram:siram_40</env:Value></env:Subcode></env:Code>"
    '<env:Reason><env:Text xml:lang="fr">Service indisponible</env:Text></env:Reason>'
    '<env:Detail><siram:Erreur xmlns:siram="urn:siram" code="insi_111" severite="fatale">'
    "Indisponibilité des téléservices</siram:Erreur></env:Detail></env:Fault></env:Body></env:Envelope>"
).encode()

# DESIR_560: the certificate's CN is not INSI-AUTO / INSI-MANU (upper-case code as the README quotes it).
FAULT_ACCESS_LEVEL = (
    f'<env:Envelope xmlns:env="{SOAP}"><env:Body><env:Fault><env:Code><env:Value>env:Sender</env:Value>'
    '</env:Code><env:Reason><env:Text xml:lang="fr">Accès refusé</env:Text></env:Reason>'
    '<env:Detail><siram:Erreur xmlns:siram="urn:siram" code="DESIR_560" severite="erreur">'
    "Niveau d'accès insuffisant</siram:Erreur></env:Detail></env:Fault></env:Body></env:Envelope>"
).encode()

# A Receiver fault with a subcode and no detail at all.
FAULT_NO_DETAIL = (
    f'<env:Envelope xmlns:env="{SOAP}"><env:Body><env:Fault><env:Code><env:Value>env:Receiver</env:Value>'
    "<env:Subcode><env:Value>env:siram_40</env:Value></env:Subcode></env:Code>"
    '<env:Reason><env:Text xml:lang="fr">Erreur technique</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>'
).encode()
