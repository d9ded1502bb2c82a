"""Parameters of the people and emergency-services models, with documented defaults.

Every default names where it comes from. The behavioural numbers are indicative values inside the
ranges reported by the flood-evacuation literature, not a calibration for Tam Kỳ: a scenario should
override them when local survey data exist.

Sources (abbreviations used below)
- [FD2321] HR Wallingford / Defra & Environment Agency (2006), *Flood Risks to People, Phase 2*,
  R&D Technical Report FD2321/TR2: hazard rating HR = d·(v + 0.5) + DF, debris factor table,
  hazard classes 0.75 / 1.25 / 2.0.
- [LSM] HR Wallingford *Life Safety Model* (Lumbroso & Di Mauro 2008; Lumbroso & Davison 2018,
  J. Flood Risk Manage. 11:S147): people walking in flood water, building collapse/occupancy,
  vehicle instability depths ~0.3 m (small cars float at ~0.5 m), warning dissemination curves.
- [Dawson11] Dawson, Peppe & Wang (2011), *An agent-based model for risk-based flood incident
  management*, Natural Hazards 59:167-189: per-step probability of responding to a warning,
  dependence on age/vulnerability, walking speed reduction in water, vehicle stall depths.
- [MATSim] Lämmel, Grether & Nagel (2010), *The representation and implementation of time-dependent
  inundation in large-scale microscopic evacuation simulations*, Transp. Res. C 18:84-98, and the
  MATSim evacuation studies (Padang): walking speed 1.3 m/s, departure-time (mobilisation) curves.
- [Sorensen] Sorensen & Mileti (2014), *First alerts or warnings* / Sorensen (2000) *Hazard warning
  systems: review of 20 years of progress*, Nat. Hazards Rev. 1:119: reach and delay of warning
  channels (sirens/loudspeakers, TV, phone/cell broadcast, door-to-door route alerting).
- [Lindell] Lindell & Perry (2012), *The Protective Action Decision Model*, Risk Anal. 32:616:
  environmental cues (observed water) and social cues (neighbours leaving) raise response.
- [Pregnolato] Pregnolato et al. (2017), Transp. Res. D 55:67: vehicle speed vs. water depth,
  impassable above 0.3 m.
- [NFPA] NFPA 1901 / manufacturer data: fire apparatus fording depth 0.5-0.9 m; ambulances
  (van chassis) ~0.3 m; flat-bottom rescue boats draft 0.2-0.4 m, 4-8 persons.
- [EMS] Background emergency-medical demand of 0.1-0.3 calls per 1,000 people per day (WHO/EMS
  system benchmarks, e.g. Al-Shaqsi 2010 Oman Med. J. 25:320); on-scene times 15-20 min.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twin.constants import STALL_DEPTH_M

CHANNELS = ("loudspeaker", "cell_broadcast", "tv", "door_to_door", "hotel_staff")


@dataclass(frozen=True)
class ChannelParams:
    """How one warning channel reaches people and how much they trust it.

    reach: fraction of households in the warned area the channel eventually reaches [Sorensen].
    delay_mean_s: mean delay between issue and receipt (exponential) [Sorensen; LSM].
    credibility: added to the log-odds of complying once received [Sorensen; Dawson11].
    tourist_reach: reach among tourists (language, no local TV, roaming phones).
    """

    reach: float
    delay_mean_s: float
    credibility: float
    tourist_reach: float
    night_reach_factor: float = 1.0   # reach × this between 22:00 and 06:00 (asleep, TV off) [Sorensen]


DEFAULT_CHANNELS: dict[str, ChannelParams] = {
    # sirens / ward loudspeakers ("loa phường"): quick but heard by ~60 %, lower trust
    "loudspeaker": ChannelParams(reach=0.6, delay_mean_s=600.0, credibility=0.0, tourist_reach=0.3,
                                 night_reach_factor=0.6),
    # cell broadcast: fast and wide, medium trust
    "cell_broadcast": ChannelParams(reach=0.85, delay_mean_s=300.0, credibility=0.3, tourist_reach=0.6,
                                    night_reach_factor=0.8),
    # TV: reach depends on who is watching; slower
    "tv": ChannelParams(reach=0.5, delay_mean_s=1800.0, credibility=0.2, tourist_reach=0.1,
                        night_reach_factor=0.2),
    # door-to-door (ward officials, militia): near-complete reach, slow, most trusted
    "door_to_door": ChannelParams(reach=0.95, delay_mean_s=5400.0, credibility=1.2, tourist_reach=0.0),
    # hotel staff relaying an official warning to their guests
    "hotel_staff": ChannelParams(reach=0.0, delay_mean_s=900.0, credibility=1.0, tourist_reach=0.9,
                                 night_reach_factor=0.8),
}


@dataclass(frozen=True)
class PeopleParams:
    """Behaviour and movement of residents and tourists."""

    # ---- population ---------------------------------------------------------------------------
    population_scale: float = 1.0            # multiply every ward's households and persons
    sample_fraction: float = 1.0             # simulate this share of households (and tourists, and
                                             # shelter places); tables scale persons by 1/sample_fraction.
                                             # The full population costs ~0.03 s per step: keep 1.0.
    agents_per_household: float = 1.0       # one agent per household (the only supported value)
    n_households: int | None = None          # rescale the city's households to this total (benchmark)
    n_persons: int | None = None             # ... and persons to this total
    n_tourists: int | None = None            # None: the city's tourists (places.tourists at hotels, else
                                             # population.tourists); placed at hotels by those numbers
    shelter_kinds: tuple[str, ...] = ("shelter", "school", "public_building")
    # Vietnamese flood/typhoon plans use schools and ward halls as collective evacuation points
    # ("điểm sơ tán tập trung"); their capacity column is the number of evacuees they take
    shelter_storeys: int = 2                 # evacuees move upstairs in a flooded shelter
    shelter_close_depth_m: float = 0.3       # a shelter with more water at its door takes no one new
    tourist_party_mean: float = 2.2          # persons per tourist party (1..4)
    tourist_vehicle_share: float = 0.1       # parties with a (rented) motorbike
    awareness_mean: float = 0.6              # residents: Beta mean, past floods make awareness high
    awareness_concentration: float = 6.0     # Beta a+b
    tourist_awareness: float = 0.1
    start_hour_local: float | None = None    # local clock hour at t = 0 (time-of-day effect on warning
                                             # reach); None: no time-of-day effect
    storey_height_m: float = 3.0
    max_storeys: int = 6

    # ---- warnings and decision [Dawson11; Lindell; Sorensen] ------------------------------------
    channels: Mapping[str, ChannelParams] = field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    comply_intercept: float = 0.0            # log-odds of complying with a received warning
    comply_awareness: float = 2.0            # × (awareness − 0.5)
    comply_vulnerable: float = 0.5           # households with elderly or children comply more
    comply_neighbours: float = 2.0           # × fraction of the ward that has left
    mobilisation_mean_s: float = 1800.0      # mean delay between deciding and leaving [MATSim]
    cue_water_rate_per_h: float = 2.0        # extra per-hour response rate when water is at home
    cue_neighbour_rate_per_h: float = 0.5    # × fraction of the ward that has left
    water_cue_depth_m: float = 0.05          # water seen at the door
    # action choice once a household acts (weights, renormalised over feasible actions)
    w_upper: float = 1.0                     # only when storeys >= 2
    w_shelter: float = 1.0
    w_relatives: float = 1.0                 # ×0.3 without a vehicle
    tourist_w_upper: float = 2.0             # hotels are multi-storey; staff send guests up
    tourist_w_shelter: float = 1.0

    # ---- movement [MATSim; Dawson11; LSM; Pregnolato] -------------------------------------------
    walk_speed_mps: float = 1.3
    walk_speed_vulnerable_mps: float = 0.9
    walk_stop_depth_m: float = 0.8           # adults cannot walk in deeper water [LSM; Dawson11]
    walk_stop_depth_vulnerable_m: float = 0.5
    vehicle_stall_depth_m: Mapping[str, float] = field(  # own movement when no traffic model
        default_factory=lambda: {c: STALL_DEPTH_M[c] for c in ("motorbike", "car")})   # twin.constants
    abandon_vehicle_after_s: float = 7200.0  # stuck this long in a vehicle trip: leave it, walk on
    safe_elevation_quantile: float = 0.9     # road nodes above this elevation quantile are "outside"
    n_relatives_nodes: int = 20

    # ---- hazard and rescue [FD2321; LSM] --------------------------------------------------------
    trapped_depth_m: float = 1.0             # ground floor, no upper floor reached: call for rescue
    upper_floor_margin_m: float = 1.0        # trapped on the upper floor when water is this deep there
    release_depth_m: float = 0.3             # trapped people not yet rescued are free again below this
    hazard_thresholds: tuple[float, float, float] = (0.75, 1.25, 2.0)  # FD2321 classes (twin.hazard)
    # (the debris factor's land use comes from the city land cover, as on the map: twin.hazard.land_use)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | PeopleParams | None) -> PeopleParams:
        return _from_dict(cls, d, "people")


@dataclass(frozen=True)
class UnitClass:
    """One kind of emergency unit."""

    mode: str                 # "road" or "boat"
    stall_depth_m: float      # road: links deeper than this are impassable; boat: min depth (draft)
    speed_mps: float          # boat speed on water; road units use link travel times
    vehicle_class: str        # traffic vehicle class for link travel times
    capacity_persons: int     # persons carried per trip
    on_scene_s: float         # time on scene per incident


# road stall depths are the traffic component's class stall depths (twin.constants.STALL_DEPTH_M:
# emergency vans 0.45 m, trucks 0.6 m), so a route the services plan is one traffic would let them drive
DEFAULT_UNIT_CLASSES: dict[str, UnitClass] = {
    "ambulance": UnitClass("road", STALL_DEPTH_M["emergency"], 0.0, "emergency", 2, 900.0),
    "fire_truck": UnitClass("road", STALL_DEPTH_M["truck"], 0.0, "truck", 8, 900.0),
    "boat": UnitClass("boat", 0.3, 2.5, "boat", 6, 600.0),
}


@dataclass(frozen=True)
class ServicesParams:
    """Dispatch, units, hospitals and shelters."""

    medical_rate_per_1000_per_day: float = 0.2      # [EMS]
    life_threatening_share: float = 0.3             # of medical calls (priority 1)
    transport_share: float = 0.7                    # medical calls that need hospital transport
    ambulances_per_hospital: int = 3
    fire_trucks_per_station: int = 2
    boats_per_station: int = 2
    n_boats: int | None = None                      # total boats (overrides boats_per_station)
    unit_classes: Mapping[str, UnitClass] = field(default_factory=lambda: dict(DEFAULT_UNIT_CLASSES))
    # duty hours per unit kind: {kind: (start_s, length_s)} repeating every 24 h from scenario start;
    # kinds not listed are on duty around the clock (crews relieve each other on station)
    shifts: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    boat_launch_s: float = 600.0                    # trailer, launch and crew briefing
    boat_land_speed_mps: float = 4.0                # trailered over dry land (coarse, incl. detours)
    boat_grid_cells: int = 40000                    # boats route on a coarse copy of the flood grid
    handover_s: float = 900.0                       # at hospital
    hospital_close_depth_m: float = 0.3
    hospital_occupancy0: float = 0.7                # beds occupied at start
    hospital_stay_mean_s: float = 3 * 86400.0
    hospital_default_beds: int = 200
    dry_road_speed_factor_depth_m: float = 0.3      # Pregnolato: speed → 0 at this depth (cars)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | ServicesParams | None) -> ServicesParams:
        return _from_dict(cls, d, "services")


def _from_dict(cls, d, section):
    if d is None:
        return cls()
    if isinstance(d, cls):
        return d
    if not isinstance(d, Mapping):
        raise ValueError(f"{section} params: expected a mapping, got {type(d).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kw: dict[str, Any] = {}
    for k, v in d.items():
        if k not in names:
            raise ValueError(f"{section} params: unknown key {k!r} (known: {', '.join(sorted(names))})")
        if k == "channels":
            ch = dict(DEFAULT_CHANNELS)
            for name, cp in dict(v).items():
                if name not in CHANNELS:
                    raise ValueError(f"{section} params: channels: unknown channel {name!r} (known: {CHANNELS})")
                base = dataclasses.asdict(ch[name])
                base.update(cp if isinstance(cp, Mapping) else dataclasses.asdict(cp))
                ch[name] = ChannelParams(**base)
            v = ch
        elif k == "unit_classes":
            uc = dict(DEFAULT_UNIT_CLASSES)
            for name, u in dict(v).items():
                base = dataclasses.asdict(uc[name]) if name in uc else {}
                base.update(u if isinstance(u, Mapping) else dataclasses.asdict(u))
                uc[name] = UnitClass(**base)
            v = uc
        elif k == "vehicle_stall_depth_m":
            v = {**{c: STALL_DEPTH_M[c] for c in ("motorbike", "car")}, **dict(v)}
        elif k == "shifts":
            v = {str(kind): (float(se[0]), float(se[1])) for kind, se in dict(v).items()}
            for kind, (_st, ln) in v.items():
                if not (0 < ln <= 86400.0):
                    raise ValueError(f"{section} params: shifts[{kind!r}] length {ln} must be in (0, 86400] s")
        elif k == "shelter_kinds":
            v = tuple(str(x) for x in ([v] if isinstance(v, str) else v))
        elif k == "hazard_thresholds":
            from twin.hazard import check_thresholds

            v = check_thresholds(v, f"{section} params: hazard_thresholds")
        kw[k] = v
    out = cls(**kw)
    if section == "people":
        if not (0 < out.sample_fraction <= 1):
            raise ValueError(f"people params: sample_fraction must be in (0, 1], got {out.sample_fraction}")
        if out.agents_per_household != 1.0:
            raise ValueError(f"people params: agents_per_household must be 1.0 (one Mesa agent per household), "
                             f"got {out.agents_per_household}")
        if not (out.population_scale > 0):
            raise ValueError(f"people params: population_scale must be > 0, got {out.population_scale}")
    for f in dataclasses.fields(cls):
        val = getattr(out, f.name)
        if isinstance(val, float) and (val != val):
            raise ValueError(f"{section} params: {f.name} is NaN")
    return out
