<resource schema="surveydm_bench">
  <meta name="title">surveydm TAP benchmark catalog</meta>
  <meta name="description">Copy of the detection table of benchmarks/bench_tap.py, served by DaCHS for a
    side-by-side cone-search comparison.</meta>
  <meta name="creationDate">2026-12-07T00:00:00Z</meta>
  <meta name="subject">benchmark</meta>
  <meta name="creator.name">surveydm</meta>

  <table id="detection" onDisk="True" adql="True" primary="id">
    <mixin>//scs#q3cindex</mixin>
    <column name="id" type="bigint" ucd="meta.id;meta.main" required="True"/>
    <column name="ra" type="double precision" unit="deg" ucd="pos.eq.ra;meta.main"/>
    <column name="dec" type="double precision" unit="deg" ucd="pos.eq.dec;meta.main"/>
    <column name="mag" type="double precision" unit="mag" ucd="phot.mag"/>
    <column name="healpix" type="bigint" ucd="pos.healpix"/>
  </table>

  <data id="import">
    <make table="detection"/>
  </data>
</resource>
