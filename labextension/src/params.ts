/**
 * Client-side checks of job parameter values, the same rules as the CLI's
 * `-p NAME=VALUE` (jupyter_opx/jobs/params.py `coerce`): a bad value is
 * refused in the form, before any request. The server checks again.
 */
import { ParamSpec, ParamType } from './models';

const EXPECTED: Record<ParamType, [string, string]> = {
  int: ['an int', 'write a whole number such as 5'],
  float: ['a float', 'write a number such as 0.5 or 1e-3'],
  bool: ['a bool', 'write true or false (also yes/no, on/off, 1/0)'],
  str: ['a str', 'pass the value as a string'],
  date: ['a date', 'write an ISO date such as 2026-11-30'],
  list: ['a list', 'write a JSON or Python list such as ["a", "b"]'],
  dict: ['a dict', 'write a JSON or Python dict such as {"a": 1}'],
  ref: [
    'a snapshot reference',
    'write NAME, NAME/VERSION or NAME@ALIAS (churn@production)'
  ],
  any: ['a value', 'give a value']
};

const TRUE = ['true', 'yes', '1', 'on'];
const FALSE = ['false', 'no', '0', 'off'];
const INT = /^[+-]?\d(_?\d)*$/;
const FLOAT =
  /^[+-]?((\d(_?\d)*)?\.?\d(_?\d)*\.?(\d(_?\d)*)?([eE][+-]?\d(_?\d)*)?|inf(inity)?|nan)$/i;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const NAME = '[A-Za-z0-9][A-Za-z0-9_.-]{0,127}';
const ALIAS = '[A-Za-z][A-Za-z0-9_.-]{0,63}';
const REF = new RegExp(`^${NAME}(/\\d{1,9}|@${ALIAS})?$`);

/** The outcome of checking one field: the typed value, or what is wrong. */
export type CheckResult =
  { ok: true; value: unknown } | { ok: false; error: string };

function isValidDate(text: string): boolean {
  const m = DATE.exec(text);
  if (!m) {
    return false;
  }
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(y, mo - 1, d));
  return (
    y >= 1 &&
    date.getUTCFullYear() === y &&
    date.getUTCMonth() === mo - 1 &&
    date.getUTCDate() === d
  );
}

/** JSON, or a simple Python literal (single quotes, True/False/None). */
function parseLiteral(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    const asJson = text
      .replace(/'([^'\\]*)'/g, (_m, inner: string) => JSON.stringify(inner))
      .replace(/\bTrue\b/g, 'true')
      .replace(/\bFalse\b/g, 'false')
      .replace(/\bNone\b/g, 'null')
      .replace(/,\s*([\]}])/g, '$1')
      .replace(/^\((.*)\)$/s, '[$1]');
    return JSON.parse(asJson);
  }
}

function convert(type: ParamType, text: string): unknown {
  const t = text.trim();
  switch (type) {
    case 'int':
      if (!INT.test(t)) {
        throw new Error();
      }
      return Number(t.replace(/_/g, ''));
    case 'float':
      if (!FLOAT.test(t) || t === '.' || /^[+-]?\.?$/.test(t)) {
        throw new Error();
      }
      return Number(
        t.replace(/_/g, '').replace(/^([+-]?)inf(inity)?$/i, '$1Infinity')
      );
    case 'bool':
      if (TRUE.includes(t.toLowerCase())) {
        return true;
      }
      if (FALSE.includes(t.toLowerCase())) {
        return false;
      }
      throw new Error();
    case 'str':
      return text;
    case 'date':
      if (!isValidDate(t)) {
        throw new Error();
      }
      return t;
    case 'list': {
      const value = parseLiteral(t);
      if (!Array.isArray(value)) {
        throw new Error();
      }
      return value;
    }
    case 'dict': {
      const value = parseLiteral(t);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new Error();
      }
      return value;
    }
    case 'ref':
      if (!REF.test(t)) {
        throw new Error();
      }
      return t;
    default:
      // 'any': a literal when it reads as one, else the text
      try {
        return parseLiteral(t);
      } catch {
        return text;
      }
  }
}

/**
 * Check the text typed for `param`.
 *
 * Returns `{ok: true, value: undefined}` for an empty field (the notebook's
 * default is kept), the converted value when it fits, else the CLI's message.
 */
export function checkParam(param: ParamSpec, text: string): CheckResult {
  if (text.trim() === '') {
    return { ok: true, value: undefined };
  }
  if (param.nullable && ['None', 'null'].includes(text.trim())) {
    return { ok: true, value: null };
  }
  const [expected, hint] = EXPECTED[param.type] ?? EXPECTED.any;
  try {
    return { ok: true, value: convert(param.type, text) };
  } catch {
    const shown = text.length <= 80 ? text : text.slice(0, 77) + '...';
    return {
      ok: false,
      error: `parameter ${param.name}: expected ${expected}, got '${shown}'; ${hint}`
    };
  }
}

/** The default shown in an empty field, as the user would type it. */
export function defaultText(param: ParamSpec): string {
  if (param.default_source) {
    return param.default_source;
  }
  const value = param.default;
  if (value === null || value === undefined) {
    return param.nullable ? 'None' : '';
  }
  if (typeof value === 'string') {
    return value;
  }
  if (typeof value === 'boolean') {
    return value ? 'true' : 'false';
  }
  return JSON.stringify(value);
}
