"""A small bilingual glossary: common customer-service words of six languages, in English.

Why: the embedding model (all-MiniLM-L6-v2) and BM25 read English; a customer who writes
"je veux annuler ma commande" shares no token with a pack written in English, and the
model maps text it cannot read next to short generic phrases (greetings). P4.1 puts the
English word next to the foreign one (:mod:`processors.retrieval.query_wording`).

What is in it: the everyday vocabulary of customer service (greeting, thanks, farewell,
money, orders and deliveries, returns, accounts, payments, bills, complaints, people,
energy supply, moving house, time words), written as general vocabulary, not from any
pack's phrases: a pack's own words reach the model through its examples. Forms that are
also English words with another meaning ("will", "die", "also", "gift", "bad") are left
out: the glossary must never change an English message. Entries are matched on whole
words, case- and accent-insensitively; phrases of several words are matched before single
words. Languages: es, fr, de, pt, it, nl.

Format: ``english: form, form, ...`` per line; the English side is what is embedded.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_TEXT = """
hello: hola, buenas, buenos dias, buenas tardes, bonjour, bonsoir, salut, hallo, guten tag,
    guten morgen, moin, servus, ola, bom dia, boa tarde, ciao a tutti, buongiorno, buonasera,
    goedemorgen, goedendag, hoi
goodbye: adios, hasta luego, hasta pronto, au revoir, a bientot, bonne journee, bonne soiree,
    tschuss, auf wiedersehen, bis bald, schonen tag, tchau, ate logo, adeus, arrivederci,
    a presto, buona giornata, tot ziens, doei
thanks: gracias, muchas gracias, merci, merci beaucoup, danke, danke schon, vielen dank,
    obrigado, obrigada, grazie, grazie mille, bedankt, dank je, dank u
please: por favor, s'il vous plait, s'il te plait, bitte, por favor, per favore, alstublieft,
    alsjeblieft
help: ayuda, ayudame, aide, aidez-moi, hilfe, helfen, ajuda, aiuto, hulp
i want: quiero, quisiera, je veux, je voudrais, ich mochte, ich will, quero, queria, voglio,
    vorrei, ik wil
can i: puedo, puedes, puede, je peux, pouvez-vous, kann ich, konnen sie, posso, pode, puo,
    kan ik
cannot pay: no puedo pagar, je ne peux pas payer, ich kann nicht zahlen,
    ich kann nicht bezahlen, nao posso pagar, non posso pagare, ik kan niet betalen
money: dinero, plata, argent, geld, dinheiro, soldi, denaro
money back: reembolso, devolucion del dinero, remboursement, rembourser, remboursez,
    erstattung, ruckerstattung, geld zuruck, reembolsar, rimborso, rimborsare, terugbetaling,
    geld terug
back: zuruck, de vuelta, terug, indietro
return: devolver, devolucion, retourner, renvoyer, retour, zuruckschicken, zurucksenden,
    rucksendung, retoure, devolucao, restituire, reso, terugsturen, retourneren
send: enviar, envoyer, schicken, senden, mandar, inviare, spedire, sturen, versturen
order: pedido, commande, bestellung, encomenda, ordine, bestelling
package: paquete, paquet, colis, paket, pacote, encomenda, pacco, pakket
delivery: entrega, envio, livraison, lieferung, zustellung, consegna, levering, bezorging
deliver: entregar, livrer, liefern, zustellen, consegnare, leveren, bezorgen
address: direccion, adresse, endereco, indirizzo, adres, lieferadresse
where is: donde esta, ou est, wo ist, wo bleibt, onde esta, waar is
when: cuando, quand, wann, quando, wanneer
why: por que, porque, pourquoi, warum, perche, waarom
how much: cuanto, cuanto cuesta, combien, wie viel, wieviel, quanto, quanto costa, hoeveel
cancel: cancelar, anular, annuler, stornieren, storniere, abbestellen, annullare, annulla,
    cancellare, annuleren
change: cambiar, cambio, changer, modifier, andern, anderung, wechseln, mudar, alterar,
    trocar, cambiare, modificare, wijzigen, veranderen
account: cuenta, compte, konto, conta, account, rekening
password: contrasena, mot de passe, passwort, kennwort, senha, parola d'ordine, wachtwoord
email address: correo, correo electronico, courriel, adresse e-mail, e-mail-adresse
phone number: telefono, numero de telefono, telephone, numero de telephone, telefonnummer,
    handynummer, numero de telefone, numero di telefono, telefoonnummer
number: numero, nummer
payment: pago, paiement, zahlung, pagamento, betaling
pay: pagar, payer, zahlen, bezahlen, pagare, betalen
card: tarjeta, carte, karte, kreditkarte, cartao, carta, kaart
charged: cobrado, cobro, debite, preleve, abgebucht, belastet, cobrado, addebitato, afgeschreven
twice: dos veces, deux fois, zweimal, duas vezes, due volte, twee keer
declined: rechazada, rechazado, refusee, abgelehnt, recusado, recusada, rifiutata,
    geweigerd
invoice: factura, facture, rechnung, fatura, fattura, factuur
bill: recibo, facture, rechnung, conta de luz, bolletta, rekening, afrekening
price: precio, prix, preis, preco, prezzo, prijs
expensive: caro, cara, cher, chere, teuer, costoso, duur
high: alta, alto, elevee, eleve, hoch, zu hoch, troppo alta, hoog
cheaper: mas barato, moins cher, billiger, gunstiger, mais barato, piu economico, goedkoper
product: producto, produit, produkt, produto, prodotto, artikel, articulo, article, articolo
size: talla, tamano, taille, grosse, tamanho, taglia, maat
in stock: disponible, en stock, auf lager, vorratig, disponivel, disponibile, op voorraad
weight: peso, pesa, poids, gewicht, wiegt
waterproof: impermeable, wasserdicht, impermeavel, impermeabile, waterdicht
battery: pila, pilas, bateria, piles, batterie, batterien, pilha, batteria, batterij
broken: roto, rota, cassé, casse, kaputt, defekt, quebrado, quebrada, rotto, rotta, kapot
damaged: danado, danada, endommage, abime, beschadigt, beschadigt, danificado, danneggiato
wrong: equivocado, incorrecto, mauvais, mauvaise, falsch, errado, errada, sbagliato, verkeerd
late: tarde, retraso, en retard, verspatet, spat, atrasado, in ritardo, te laat
complaint: queja, reclamacion, reclamation, plainte, beschwerde, reklamation, reclamacao,
    queixa, reclamo, lamentela, klacht
unhappy: molesto, enfadado, descontento, insatisfecho, mecontent, pas content, decu, decue,
    unzufrieden, enttauscht, verargert, insatisfeito, chateado, deluso, scontento, arrabbiato,
    ontevreden, boos
terrible service: servicio pesimo, pesimo, servicio terrible, service nul, nul,
    schlechter service, pessimo, pessimo servizio, slechte service
service: servicio, service, dienst, servico, servizio
person: persona, personne, quelqu'un, mensch, menschen, person, jemand, pessoa, alguem,
    qualcuno, iemand
human agent: agente, operador, conseiller, conseillere, mitarbeiter, mitarbeiterin,
    sachbearbeiter, atendente, operatore, medewerker
speak to: hablar con, parler a, parler avec, sprechen mit, reden mit, falar com,
    parlare con, spreken met, praten met
call: llamar, llamada, appeler, appel, anrufen, anruf, ligar, chiamare, chiamata, bellen
problem: problema, probleme, problem, problemi, probleem
question: pregunta, question, frage, pergunta, domanda, vraag
information: informacion, renseignement, auskunft, informacao, informazione, informatie
meter reading: lectura del contador, lectura del medidor, releve de compteur, releve,
    zahlerstand, leitura do contador, lettura del contatore, meterstand
meter: contador, medidor, compteur, zahler, stromzahler, gaszahler, contatore, meter
electricity: electricidad, luz, electricite, courant, strom, eletricidade, energia eletrica,
    elettricita, corrente, stroom, elektriciteit
power cut: apagon, corte de luz, sin luz, coupure de courant, panne de courant, stromausfall,
    kein strom, queda de energia, sem luz, blackout, interruzione di corrente, stroomstoring
gas: gaz, gas, gas
smell: huele, olor, odeur, riecht, geruch, cheira, cheiro, puzza, odore, ruik, ruikt
leak: fuga, fuite, leck, undicht, vazamento, perdita, lek, lekkage
emergency: emergencia, urgence, notfall, emergencia, emergenza, noodgeval
energy plan: tarifa, plan de energia, tarif, forfait, stromtarif, tarif wechseln, plano,
    tariffa, energiecontract, tarief
contract: contrato, contrat, vertrag, contratto, contract
moving house: mudanza, me mudo, nos mudamos, demenager, demenage, je demenage, nous demenageons,
    umzug, umziehen, ziehe um, ziehen um, ziehe aus, mudanca, vou mudar, trasloco,
    mi trasferisco, verhuizen, verhuis
house: casa, maison, haus, wohnung, huis
new: nuevo, nueva, nouveau, nouvelle, neu, neue, novo, nova, nuovo, nuova, nieuw, nieuwe
today: hoy, aujourd'hui, heute, hoje, oggi, vandaag
tomorrow: manana, demain, morgen, amanha, domani
yesterday: ayer, gestern, ontem, ieri, gisteren
month: mes, mois, monat, mese, maand
week: semana, semaine, woche, settimana, week
forget it: olvidalo, olvidelo, no importa, da igual, laisse tomber, oublie, oubliez,
    c'est pas grave, vergiss es, egal, schon gut, esquece, deixa pra la, lascia perdere,
    non importa, laat maar, maakt niet uit
more time: mas tiempo, plus de temps, mehr zeit, mais tempo, piu tempo, meer tijd
payment plan: plan de pagos, echeancier, ratenzahlung, raten, parcelamento, rateizzazione,
    betalingsregeling
"""


def fold(text: str) -> str:
    """Lower case without accents, one character for one ("Zählerstand" -> "zahlerstand"),
    so a span found in the folded text is the same span in the original."""
    if text.isascii():  # what the characters below give for ASCII, one C call
        return text.lower()
    return "".join(_fold_char(c) for c in text)


@lru_cache(maxsize=4096)
def _fold_char(c: str) -> str:
    lower = c.lower()
    lower = lower if len(lower) == 1 else c
    return unicodedata.normalize("NFKD", lower)[:1] or lower


def _parse(text: str) -> dict[str, str]:
    entries: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            english, forms = entries.pop()
            entries.append((english, f"{forms},{line}"))
        else:
            english, _, forms = line.partition(":")
            entries.append((english.strip(), forms))
    table: dict[str, str] = {}
    for english, forms in entries:
        for form in forms.split(","):
            key = " ".join(fold(form).split())
            if key and key != english:
                table.setdefault(key, english)
    return table


GLOSSARY: dict[str, str] = _parse(_TEXT)
"""Foreign form (folded, see :func:`fold`) -> English."""
