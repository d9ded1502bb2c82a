"""People and emergency services: Mesa households and tourists, SimPy dispatch, hazard to people.

Public: ``PeopleModel``, ``EmergencyServices``, ``PeopleParams``, ``ServicesParams``, ``EventLog``;
``hazard_rating``, ``hazard_class``, ``debris_factor``, ``HAZARD_CLASSES`` are re-exported from
:mod:`twin.hazard` (their one implementation). Population synthesis: :mod:`twin.agents.population`.
"""
from twin.hazard import HAZARD_CLASSES, debris_factor, hazard_class, hazard_rating

from .eventlog import EventLog
from .params import CHANNELS, ChannelParams, PeopleParams, ServicesParams, UnitClass
from .people import STATES, Household, PeopleModel, TouristParty
from .services import EmergencyServices

__all__ = ["PeopleModel", "EmergencyServices", "PeopleParams", "ServicesParams", "ChannelParams",
           "UnitClass", "Household", "TouristParty", "hazard_rating", "hazard_class", "debris_factor",
           "HAZARD_CLASSES", "STATES", "CHANNELS", "EventLog"]
